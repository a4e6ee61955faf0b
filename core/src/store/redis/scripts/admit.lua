local op, err = read_op()
if not op then return err end
local rec, cur = op.rec, op.cur
local at = window_expiry(ARGV[4], ARGV[5])
local reply, answer
if rec.kind == 'a' then
  -- A resend whose first answer was lost: the same answer, counted once.
  reply = {1, rec.number, rec.raise_count}
elseif rec.kind == 'd' then
  reply = {0, rec.number, '0'}
elseif rec.kind then
  -- Answered long ago (or a number another kind of operation used): nothing added.
  reply = {0, cur, '0'}
else
  local after = add(cur, ARGV[6])
  if cmp(after, U64) <= 0 and (ARGV[9] == '1' or (cmp(cur, ARGV[7]) < 0 and cmp(after, ARGV[8]) <= 0)) then
    local total = minimum(after, MAX)
    write_total(KEYS[2], cur, op.plain, op.exists, total, at, op.raises)
    reply, answer = {1, total, op.raise_count}, 'a' .. total .. '/' .. op.raise_count
  else
    reply, answer = {0, cur, '0'}, 'd' .. cur
  end
end
write_ops(KEYS[1], rec, answer, at)
return reply
