local op, err = read_op()
if not op then return err end
local rec, cur = op.rec, op.cur
local at = window_expiry(ARGV[4], ARGV[5])
local taken, answer = '0', nil
if rec.kind == 'b' then
  taken = rec.number
elseif not rec.kind then
  if op.raise_count == canon(ARGV[7]) then
    taken = minimum(ARGV[6], cur)
    write_total(KEYS[2], cur, op.plain, op.exists, sub(cur, taken), at, op.raises)
  end
  answer = 'b' .. taken
end
write_ops(KEYS[1], rec, answer, at)
return taken
