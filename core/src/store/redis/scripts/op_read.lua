-- Reads what an admit, lease or give-back needs: the record (KEYS[1]) and each window's total
-- and raise count (KEYS[2i] and KEYS[2i + 1]: the request's window, then each of its `also`),
-- each window's expiry from its ARGV (end + grace, longest, at `first + stride * (i - 1)`);
-- returns nil and an error reply if any is not valid. `at`: when the record may go (the
-- latest of the windows' expiries).
local function read_op(first, stride)
  local rec = read_ops(KEYS[1])
  if not rec then return nil, corrupt(KEYS[1], 'is not a valid operations record') end
  local windows, at = {}, now + GRACE
  for i = 2, #KEYS, 2 do
    local cur, plain, exists = read_total(KEYS[i])
    if not cur then return nil, corrupt(KEYS[i], 'is not a whole number') end
    local raise_count = read_raise_count(KEYS[i + 1])
    if not raise_count then return nil, corrupt(KEYS[i + 1], 'is not a raise count') end
    local raises = nil
    if raise_count ~= '0' then raises = KEYS[i + 1] end
    local a = first + stride * (#windows)
    local w = {key = KEYS[i], cur = cur, plain = plain, exists = exists,
      raise_count = raise_count, raises = raises, at = window_expiry(ARGV[a], ARGV[a + 1]), arg = a + 2}
    if w.at > at then at = w.at end
    windows[#windows + 1] = w
  end
  return {rec = rec, windows = windows, at = at}
end
