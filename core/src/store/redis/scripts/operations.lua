local SEQ, DONE_BELOW = ARGV[2], ARGV[3]
-- An answer's kind ('1', 'a', 'd', 'g' or 'b') and its numbers (canonical text), or nil if
-- it is not one, as StoredState writes them: '1'; 'a<total>/<raise_count>' (numbers: total,
-- raise count), with ',<total>/<raise_count>' per other window of the operation; 'd<total>'
-- (',<total>' per other window); 'g<granted>/<raise_count>' (',<raise_count>' per other
-- window); 'b<taken>'.
local function answer_of(v)
  if v == '1' then return '1', {} end
  local kind, rest = string.sub(v, 1, 1), string.sub(v, 2)
  local numbers = {}
  local function push(t)
    local n = canon(t)
    if not n or cmp(n, U64) > 0 then return false end
    numbers[#numbers + 1] = n
    return true
  end
  -- Each of a comma-separated list, through `each` (false: not valid).
  local function list(text, each)
    for part in string.gmatch(text .. ',', '([^,]*),') do
      if not each(part) then return false end
    end
    return true
  end
  local function pair(t)
    local slash = string.find(t, '/', 1, true)
    return slash ~= nil and push(string.sub(t, 1, slash - 1)) and push(string.sub(t, slash + 1))
  end
  local valid = false
  if kind == 'a' then
    valid = list(rest, pair)
  elseif kind == 'd' then
    valid = list(rest, push)
  elseif kind == 'g' then
    local slash = string.find(rest, '/', 1, true)
    valid = slash ~= nil and push(string.sub(rest, 1, slash - 1))
      and list(string.sub(rest, slash + 1), push)
  elseif kind == 'b' then
    valid = push(rest)
  end
  if not valid then return nil end
  return kind, numbers
end
-- A window's raise count (canonical text, '0' when none), or nil if the key holds something
-- else.
local function read_raise_count(key)
  if not has_type(key, 'string') then return nil end
  local raw = redis.call('GET', key)
  if not raw then return '0' end
  local c = canon(raw)
  if not c or c ~= raw or #c > 15 then return nil end
  return c
end
-- Reads and checks what the operation needs of the record: its low-water mark, SEQ's answer
-- ('stale' below the mark, the answer's kind and number if applied, nil if new), and, when
-- DONE_BELOW raises the mark, the seqs it passes (every field name is read then, and checked:
-- nothing may fail after the first write). Returns nil if any of it is not valid. Only a rising
-- mark reads the whole hash: an instance that never raises it costs O(1) per operation.
local function read_ops(key)
  if not has_type(key, 'hash') then return nil end
  local got = redis.call('HMGET', key, 'low', SEQ)
  local low, kind, numbers = '0', nil, nil
  if got[1] then
    low = canon(got[1])
    if not low or cmp(low, U64) > 0 then return nil end
  end
  if got[2] then
    kind, numbers = answer_of(got[2])
    if not kind then return nil end
  end
  if cmp(SEQ, low) < 0 then kind, numbers = 'stale', nil end
  local gone = {}
  if cmp(DONE_BELOW, low) > 0 then
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if f ~= 'low' then
        if canon(f) ~= f or cmp(f, U64) > 0 then return nil end
        if cmp(f, DONE_BELOW) < 0 then gone[#gone + 1] = f end
      end
    end
  end
  return {low = low, gone = gone, kind = kind, numbers = numbers}
end
-- After the operation: records `answer` (when applied now), raises the mark to DONE_BELOW,
-- forgets the seqs below it and keeps the record at least until `at` (the end of the last
-- window it counted in, plus grace). Never fails: the record was checked.
local function write_ops(key, rec, answer, at)
  local low = rec.low
  if cmp(DONE_BELOW, low) > 0 then low = DONE_BELOW end
  if answer and cmp(SEQ, low) >= 0 then
    redis.call('HSET', key, 'low', low, SEQ, answer)
  else
    redis.call('HSET', key, 'low', low)
  end
  -- In chunks: unpack has a limit, and nothing may fail after the first write.
  for i = 1, #rec.gone, 500 do
    redis.call('HDEL', key, unpack(rec.gone, i, math.min(i + 499, #rec.gone)))
  end
  extend(key, at)
end
