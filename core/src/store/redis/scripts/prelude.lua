if redis.replicate_commands then redis.replicate_commands() end
local MAX = '4611686018427387904'
local U64 = '18446744073709551615'
local GRACE = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Whole numbers are canonical decimal text (Lua numbers are doubles, exact only to 2^53).
local function canon(v)
  if type(v) ~= 'string' or v == '' or #v > 20 or string.find(v, '%D') then return nil end
  local s = string.gsub(v, '^0+', '')
  if s == '' then return '0' end
  return s
end
local function cmp(a, b)
  if #a ~= #b then if #a < #b then return -1 else return 1 end end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then if x < y then return -1 else return 1 end end
  end
  return 0
end
local function minimum(a, b) if cmp(a, b) <= 0 then return a end return b end
local function text_of(out)
  local n = #out
  while n > 1 and out[n] == 0 do out[n] = nil; n = n - 1 end
  local s = {}
  for k = n, 1, -1 do s[#s + 1] = out[k] end
  return table.concat(s)
end
local function add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48; i = i - 1 end
    if j > 0 then d = d + string.byte(b, j) - 48; j = j - 1 end
    if d >= 10 then d = d - 10; carry = 1 else carry = 0 end
    out[#out + 1] = d
  end
  if carry > 0 then out[#out + 1] = carry end
  return text_of(out)
end
-- a - b, or 0 if b >= a.
local function sub(a, b)
  if cmp(a, b) <= 0 then return '0' end
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = string.byte(a, i) - 48 - borrow
    if j > 0 then d = d - (string.byte(b, j) - 48); j = j - 1 end
    if d < 0 then d = d + 10; borrow = 1 else borrow = 0 end
    out[#out + 1] = d
    i = i - 1
  end
  return text_of(out)
end

local function corrupt(key, what)
  return redis.error_reply('QUOTACORRUPT ' .. string.gsub(key, '%c', '?') .. ' ' .. what)
end
local function has_type(key, want)
  local t = redis.call('TYPE', key)
  t = t.ok or t
  return t == 'none' or t == want
end
-- A window's total (capped at MAX), whether its stored text takes INCRBY, whether it exists;
-- nil if the key holds something else.
local function read_total(key)
  if not has_type(key, 'string') then return nil end
  local raw = redis.call('GET', key)
  if not raw then return '0', true, false end
  local c = canon(raw)
  if not c then return nil end
  if cmp(c, MAX) > 0 then return MAX, false, true end
  return c, c == raw, true
end
-- `raises`, the window's raise count key if it has one, is given the window's expiry (an
-- ended window's moves on with each write: the count must not go before the window).
local function write_total(key, cur, plain, exists, new, at, raises)
  local c = cmp(new, cur)
  if not plain then redis.call('SET', key, new)
  elseif c > 0 then redis.call('INCRBY', key, sub(new, cur))
  elseif c < 0 then redis.call('DECRBY', key, sub(cur, new))
  elseif not exists then return end
  redis.call('PEXPIREAT', key, string.format('%.0f', at))
  if raises then redis.call('PEXPIREAT', raises, string.format('%.0f', at)) end
end
-- When a window's keys go: its end plus grace, never before now plus grace, never after
-- now plus `longest`.
local function window_expiry(end_plus_grace, longest)
  local at = tonumber(end_plus_grace)
  if at < now + GRACE then at = now + GRACE end
  if at > now + tonumber(longest) then at = now + tonumber(longest) end
  return at
end
-- Makes `key` live at least until `at`.
local function extend(key, at)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 and now + ttl >= at then return end
  redis.call('PEXPIREAT', key, string.format('%.0f', at))
end
