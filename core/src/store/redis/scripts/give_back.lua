local op, err = read_op(5, 3)
if not op then return err end
local rec, windows = op.rec, op.windows
local taken, answer = '0', nil
if rec.kind == 'b' then
  taken = rec.numbers[1]
elseif not rec.kind then
  -- Off every window whose raise count is still the one the calls were counted under (a
  -- floor applied since may have absorbed them: forfeited there); the answer is the fewest
  -- any window took off.
  for i, w in ipairs(windows) do
    local t = '0'
    if w.raise_count == canon(ARGV[w.arg]) then
      t = minimum(ARGV[4], w.cur)
      write_total(w.key, w.cur, w.plain, w.exists, sub(w.cur, t), w.at, w.raises)
    end
    if i == 1 then taken = t else taken = minimum(taken, t) end
  end
  answer = 'b' .. taken
end
write_ops(KEYS[1], rec, answer, op.at)
return taken
