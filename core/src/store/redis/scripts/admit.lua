local op, err = read_op(6, 4)
if not op then return err end
local rec, windows = op.rec, op.windows
local COUNT, FORCE = ARGV[4], ARGV[5] == '1'
-- Every window's total (and raise count '0'): the answer to a call nothing was added for.
local function seen(totals)
  local reply = {'0'}
  for _, total in ipairs(totals) do reply[#reply + 1] = total; reply[#reply + 1] = '0' end
  return reply
end
local reply, answer
if rec.kind == 'a' and #rec.numbers == 2 * #windows then
  -- A resend whose first answer was lost: the same answer, counted once.
  reply = {'1'}
  for _, n in ipairs(rec.numbers) do reply[#reply + 1] = n end
elseif rec.kind == 'd' and #rec.numbers == #windows then
  reply = seen(rec.numbers)
else
  local totals = {}
  for i, w in ipairs(windows) do totals[i] = w.cur end
  if rec.kind then
    -- Answered long ago (or a number another operation used): nothing added.
    reply = seen(totals)
  else
    -- Admitted only if every window admits: its own rule (below, cap) on its own total.
    local fits = true
    for _, w in ipairs(windows) do
      w.after = add(w.cur, COUNT)
      if cmp(w.after, U64) > 0 then fits = false
      elseif not FORCE and not (cmp(w.cur, ARGV[w.arg]) < 0 and cmp(w.after, ARGV[w.arg + 1]) <= 0) then
        fits = false
      end
    end
    local parts = {}
    if fits then
      reply = {'1'}
      for _, w in ipairs(windows) do
        local total = minimum(w.after, MAX)
        write_total(w.key, w.cur, w.plain, w.exists, total, w.at, w.raises)
        reply[#reply + 1] = total; reply[#reply + 1] = w.raise_count
        parts[#parts + 1] = total .. '/' .. w.raise_count
      end
      answer = 'a' .. table.concat(parts, ',')
    else
      reply = seen(totals)
      answer = 'd' .. table.concat(totals, ',')
    end
  end
end
write_ops(KEYS[1], rec, answer, op.at)
return reply
