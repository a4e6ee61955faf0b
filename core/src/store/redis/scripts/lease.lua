local op, err = read_op(5, 3)
if not op then return err end
local rec, windows = op.rec, op.windows
local granted, answer = '0', nil
local raise_counts = {}
for i, w in ipairs(windows) do raise_counts[i] = w.raise_count end
if rec.kind == 'g' and #rec.numbers == 1 + #windows then
  -- A resend: the first grant again, with the totals as they are now.
  granted = rec.numbers[1]
  for i = 1, #windows do raise_counts[i] = rec.numbers[i + 1] end
elseif not rec.kind then
  -- The most every window has room for below its ceiling, never more than a total can count
  -- (it stops at MAX).
  granted = ARGV[4]
  for _, w in ipairs(windows) do
    granted = minimum(minimum(granted, sub(ARGV[w.arg], w.cur)), sub(MAX, w.cur))
  end
  if granted ~= '0' then
    for _, w in ipairs(windows) do
      local total = minimum(add(w.cur, granted), MAX)
      write_total(w.key, w.cur, w.plain, w.exists, total, w.at, w.raises)
      w.cur = total
    end
  end
  answer = 'g' .. granted .. '/' .. table.concat(raise_counts, ',')
end
write_ops(KEYS[1], rec, answer, op.at)
local reply = {granted}
for i, w in ipairs(windows) do reply[#reply + 1] = w.cur; reply[#reply + 1] = raise_counts[i] end
return reply
