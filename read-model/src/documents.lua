-- Compare-and-set of one memory or session document, with its indexes, in one
-- atomic step. Returns -1 when written, else the version actually stored (the
-- caller reloads and retries).
--
-- KEYS[1]  the generation pointer
-- ARGV[1]  key prefix          ARGV[2]  'memory' | 'session'   ARGV[3]  id
-- ARGV[4]  expected version    ARGV[5]  new version
-- ARGV[6]  document JSON, or '' when the memory is erased
-- ARGV[7]  timeline score (ms) ARGV[8]  recency score (ms)
-- ARGV[9]  generation to write, or '' for the pointer's
--
-- Key layout 2: user ids and tags are percent-encoded in keys (`enc`, the
-- same as `encode` in documents.rs), so no value can reach into another
-- user's keys.
local gen = ARGV[9]
if gen == '' then
  gen = redis.call('GET', KEYS[1]) or '1'
end
local p = ARGV[1] .. 'g' .. gen .. ':'
local kind, id = ARGV[2], ARGV[3]
local key = p .. kind .. ':' .. id
local tomb = key .. ':erased'

local current = 0
local old = redis.call('GET', key)
local old_doc = nil
if old then
  old_doc = cjson.decode(old)
  current = tonumber(old_doc['version'])
end
local erased_at = redis.call('GET', tomb)
if erased_at then
  current = tonumber(erased_at)
end
if current ~= tonumber(ARGV[4]) then
  return current
end

local function present(v)
  return v ~= nil and v ~= cjson.null
end

-- Every byte but ASCII letters, digits and - _ . ~ becomes %XX (upper case).
local function enc(value)
  return (string.gsub(value, '[^0-9A-Za-z_.~%-]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end

local function owned(owner)
  return p .. 'owner:' .. enc(owner) .. ':'
end

if kind == 'session' then
  redis.call('SET', key, ARGV[6])
  local doc = cjson.decode(ARGV[6])
  redis.call('ZADD', owned(doc['owner_id']) .. 'sessions', ARGV[7], id)
  return -1
end

-- A memory is listed (recent, session timeline, tag sets) only while active.
if old_doc and old_doc['status'] == 'active' then
  local owner = owned(old_doc['owner_id'])
  redis.call('ZREM', owner .. 'recent', id)
  if present(old_doc['session_id']) then
    redis.call('ZREM', p .. 'session:' .. old_doc['session_id'] .. ':timeline', id)
  end
  for _, tag in ipairs(old_doc['tags']) do
    redis.call('SREM', owner .. 'tag:' .. enc(tag), id)
  end
end

if ARGV[6] == '' then
  redis.call('DEL', key)
  redis.call('SET', tomb, ARGV[5])
  return -1
end

redis.call('SET', key, ARGV[6])
local doc = cjson.decode(ARGV[6])
if doc['status'] == 'active' then
  local owner = owned(doc['owner_id'])
  redis.call('ZADD', owner .. 'recent', ARGV[8], id)
  if present(doc['session_id']) then
    redis.call('ZADD', p .. 'session:' .. doc['session_id'] .. ':timeline', ARGV[7], id)
  end
  for _, tag in ipairs(doc['tags']) do
    redis.call('SADD', owner .. 'tag:' .. enc(tag), id)
  end
end
return -1
