local op, err = read_op()
if not op then return err end
local rec, cur = op.rec, op.cur
local at = window_expiry(ARGV[4], ARGV[5])
local granted, total, raise_count, answer = '0', cur, op.raise_count, nil
if rec.kind == 'g' then
  -- A resend: the first grant again, with the total as it is now.
  granted, raise_count = rec.number, rec.raise_count
elseif not rec.kind then
  -- Never more than the total can count (it stops at MAX).
  granted = minimum(minimum(ARGV[6], sub(ARGV[7], cur)), sub(MAX, cur))
  if granted ~= '0' then
    total = minimum(add(cur, granted), MAX)
    write_total(KEYS[2], cur, op.plain, op.exists, total, at, op.raises)
  end
  answer = 'g' .. granted .. '/' .. raise_count
end
write_ops(KEYS[1], rec, answer, at)
return {granted, total, raise_count}
