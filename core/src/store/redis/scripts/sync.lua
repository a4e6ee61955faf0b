local rec = read_ops(KEYS[1])
if not rec then return corrupt(KEYS[1], 'is not a valid operations record') end
local fresh = rec.kind == nil
local windows = (#KEYS - 1) / 2
local cur, plain, exists, raise_count = {}, {}, {}, {}
for i = 1, windows do
  local l, w = KEYS[2 * i], KEYS[2 * i + 1]
  cur[i], plain[i], exists[i] = read_total(w)
  if not cur[i] then return corrupt(w, 'is not a whole number') end
  raise_count[i] = read_raise_count(l)
  if not raise_count[i] then return corrupt(l, 'is not a raise count') end
end
-- Checked: from here on nothing fails.
local record_at = now + GRACE
for i = 1, windows do
  local a = 4 + 4 * (i - 1)
  local at = window_expiry(ARGV[a + 2], ARGV[a + 3])
  local new = cur[i]
  if fresh then new = minimum(add(cur[i], ARGV[a]), MAX) end
  if ARGV[a + 1] ~= '0' then
    if cmp(ARGV[a + 1], new) > 0 then new = ARGV[a + 1] end
    redis.call('SET', KEYS[2 * i], add(raise_count[i], '1'))
    redis.call('PEXPIREAT', KEYS[2 * i], string.format('%.0f', at))
  end
  local raises = nil
  if raise_count[i] ~= '0' then raises = KEYS[2 * i] end
  write_total(KEYS[2 * i + 1], cur[i], plain[i], exists[i], new, at, raises)
  if at > record_at then record_at = at end
end
local answer = nil
if fresh then answer = '1' end
write_ops(KEYS[1], rec, answer, record_at)
if fresh then return 1 end
return 0
