local function read_op()
  local rec = read_ops(KEYS[1])
  if not rec then return nil, corrupt(KEYS[1], 'is not a valid operations record') end
  local cur, plain, exists = read_total(KEYS[2])
  if not cur then return nil, corrupt(KEYS[2], 'is not a whole number') end
  local raise_count = read_raise_count(KEYS[3])
  if not raise_count then return nil, corrupt(KEYS[3], 'is not a raise count') end
  local raises = nil
  if raise_count ~= '0' then raises = KEYS[3] end
  return {rec = rec, cur = cur, plain = plain, exists = exists, raise_count = raise_count,
    raises = raises}
end
