-- The quota filter's counter operations, each atomic in Redis.
-- Loaded once (EVAL) and then called by its SHA-1 (EVALSHA); see core/src/redis.rs.
--
-- One hash per (scope, class) counter:
--   c  window kind code        s, e  window bounds (Unix seconds, [s, e))
--   u  units used in the window g     of those, units paid from grants
--   b  grant balance (carried over between windows)
--   w  warning levels reported (bit i = level i)   f  flags (1: ahead of pace reported)
-- It expires one window length plus 60 s after its window ends (EXPIREAT
-- e + (e - s) + GRACE), unless it holds grant units: a new window never
-- starts before the previous one's end (see current below), and that needs
-- the previous end for one window length after it passed.
--
-- KEYS[1] is the counter, ARGV[1] the operation. KEYS[2], when given, is the
-- operation's marker: the counter's key, '#' and the operation's id (unique per
-- Envoy VM and operation), so it shares the counter's hash tag and Redis
-- Cluster slot. A marker makes a retried operation apply once: a correction
-- (adjust, add) marks its id and a second call with the same id changes
-- nothing; a charge leaves '<window start>:<units>' so that `cancel` with the
-- same id can give those units back once, and a cancel that arrives before
-- its charge leaves 'x', so the charge, if it still comes, charges nothing.
-- Markers live REMEMBER seconds: longer than the filter retries anything
-- (quota_core::redis::corrections::GIVE_UP_AFTER_MS) plus a call's timeout.
-- charge_stack (a stacked cell's limits, all or none) takes several counters,
-- each followed by its marker, all of one hash tag and one charge id; each
-- counter's charge is then cancelled on its own (`cancel` on its key and
-- marker). A stack with a member cap (quota_core::member_cap) also takes the
-- member's cap key, last, in the same slot: a hash holding a record of window
-- code CAP_CODE whose u is the cap, set by `cap` and kept until deleted.
--
-- Every operation but view answers the record before and after it ran,
-- {exists, c, s, e, u, g, b, w, f} twice in one flat array (webdis cannot
-- carry nested arrays); charge_stack answers that pair for each counter in
-- turn, then the member cap's record when it was given one; view answers one
-- record per key. The
-- filter recomputes the caller's standing from the first with the same pure
-- function the local store runs (quota_core::decide) and checks it against
-- the second. This script mirrors decide::decide, decide::adjust and
-- decide::add_grant, and member_cap::apply: change them together
-- (core/tests/redis_script.rs compares them on random sequences against a
-- real Redis).

local key = KEYS[1]
local marker = KEYS[2]
local op = ARGV[1]
local REMEMBER = 300
local NAMES = {'c', 's', 'e', 'u', 'g', 'b', 'w', 'f'}
local GRACE = 60
-- The most units any count holds (quota_core::units::MAX_UNITS, 2^53 - 1):
-- past it Lua's doubles skip integers, and every sum below stops there.
local MAX = 9007199254740991
-- Counts read at most MAX: a record written before counts were bounded
-- comes back as a number the filter can read.
local UNITS = {u = true, g = true, b = true}
-- The window code of a member cap's record (quota_core::member_cap::MEMBER_CAP_CODE):
-- no counter's window has it.
local CAP_CODE = 2147483646

local function read_key(k)
  local v = redis.call('HMGET', k, unpack(NAMES))
  if not v[1] then return nil end
  local r = {}
  for i, name in ipairs(NAMES) do
    local n = tonumber(v[i]) or 0
    if UNITS[name] then n = math.min(math.max(n, 0), MAX) end
    r[name] = n
  end
  return r
end

local function read()
  return read_key(key)
end

-- Whether this operation's id is new (and now remembered); true without a marker.
local function first_time()
  if not marker then return true end
  return redis.call('SET', marker, '1', 'NX', 'EX', REMEMBER) ~= false
end

local function copy(r)
  local out = {}
  for _, name in ipairs(NAMES) do out[name] = r[name] end
  return out
end

local function flat(r)
  if not r then return {0, 0, 0, 0, 0, 0, 0, 0, 0} end
  return {1, r.c, r.s, r.e, r.u, r.g, r.b, r.w, r.f}
end

local function write_key(k, r)
  redis.call('HSET', k, 'c', r.c, 's', r.s, 'e', r.e, 'u', r.u, 'g', r.g, 'b', r.b, 'w', r.w, 'f', r.f)
  if r.b > 0 then
    redis.call('PERSIST', k)
  else
    redis.call('EXPIREAT', k, r.e + (r.e - r.s) + GRACE)
  end
end

local function write(r)
  write_key(key, r)
end

-- The counter as it stands at now: the stored one while its window (of the
-- same kind) is open, else a fresh one keeping the grant balance. The fresh
-- window [fresh_start, fresh_end) is the caller's calendar's for now; if it
-- starts before the stored window of the same kind ended, it is moved to
-- begin at that end and keeps its whole length (decide::current): no offset
-- opens a window that overlaps the previous one.
local function current(old, now, code, fresh_start, fresh_end)
  if old and old.c == code then
    if now < old.e then
      return copy(old)
    end
    if fresh_start < old.e then
      fresh_start, fresh_end = old.e, old.e + (fresh_end - fresh_start)
    end
  end
  return {c = code, s = fresh_start, e = fresh_end, u = 0, g = 0, b = old and old.b or 0, w = 0, f = 0}
end

local function answer(old, new)
  local out = flat(old)
  for _, v in ipairs(flat(new)) do table.insert(out, v) end
  return out
end

-- The parameters one counter's charge is decided with, from ARGV[i] on:
--   code fresh_start fresh_end hard cap confirm_above pace_used pace_before
--   ceiling levels level_1 ... level_levels
-- cap, confirm_above and pace_used are -1 when the cell has none; ceiling is
-- the most one request may cost from the plan (Limits::request_ceiling);
-- levels counts the warning levels that follow (at most 8). Answers the
-- parameters and the index past them, or nil when they are malformed.
local function limit_at(i)
  local p = {
    code = tonumber(ARGV[i]), fresh_start = tonumber(ARGV[i + 1]), fresh_end = tonumber(ARGV[i + 2]),
    hard = tonumber(ARGV[i + 3]), cap = tonumber(ARGV[i + 4]), confirm_above = tonumber(ARGV[i + 5]),
    pace_used = tonumber(ARGV[i + 6]), pace_before = tonumber(ARGV[i + 7]), ceiling = tonumber(ARGV[i + 8]),
    levels = {},
  }
  local count = tonumber(ARGV[i + 9])
  if not (p.code and p.fresh_start and p.fresh_end and p.hard and p.cap and p.confirm_above
      and p.pace_used and p.pace_before and p.ceiling and count) or count < 0 or count > 8 then
    return nil
  end
  for j = 1, count do
    local level = tonumber(ARGV[i + 9 + j])
    if not level then return nil end
    p.levels[j] = level
  end
  return p, i + 10 + count
end

-- floor(level * hard / old_hard), at least 1, for 0 <= level < old_hard and
-- hard <= MAX (member_cap::apply's scale, in integers): the product may pass
-- 2^53, where doubles skip integers, so it is built bit by bit of `hard`,
-- from the top, keeping level * (the bits so far) = q * old_hard + r with
-- r < old_hard; no sum passes old_hard. A level at or past old_hard scales
-- to at least `hard`, which drops it either way.
local function scale(level, hard, old_hard)
  if level >= old_hard then
    return math.max(hard, 1)
  end
  local bits, rest = {}, hard
  while rest > 0 do
    local bit = rest % 2
    bits[#bits + 1] = bit
    rest = (rest - bit) / 2
  end
  local q, r = 0, 0
  for j = #bits, 1, -1 do
    q = q * 2
    if r >= old_hard - r then
      r, q = r - (old_hard - r), q + 1
    else
      r = r + r
    end
    if bits[j] == 1 then
      if r >= old_hard - level then
        r, q = r - (old_hard - level), q + 1
      else
        r = r + level
      end
    end
  end
  return math.max(q, 1)
end

-- The member cap held in record `r` (member_cap::of_record), if set.
local function cap_of(r)
  if r and r.c == CAP_CODE and r.e > r.s then
    return r.u
  end
  return nil
end

-- The parameters `p` (limit_at) as member cap `cap` leaves them
-- (member_cap::apply): the hard limit is the cap, at most `most` (the pool's,
-- member_cap::ceiling); the request ceiling follows it (hard plus the cap
-- past it); each warning level scales to it, those not below it dropped and
-- equal ones kept once. The soft limit is not the script's: it only changes
-- how an admitted request is served, which the filter decides.
local function capped(p, cap, most)
  local hard = math.min(cap, most)
  local q = {
    code = p.code, fresh_start = p.fresh_start, fresh_end = p.fresh_end, hard = hard, cap = p.cap,
    confirm_above = p.confirm_above, pace_used = p.pace_used, pace_before = p.pace_before,
    ceiling = math.min(hard + math.max(p.cap, 0), MAX), levels = {},
  }
  for _, level in ipairs(p.levels) do
    local scaled = scale(level, hard, math.max(p.hard, 1))
    if scaled < hard and scaled ~= q.levels[#q.levels] then
      q.levels[#q.levels + 1] = scaled
    end
  end
  return q
end

-- One counter's charge of `cost` units at `now`, decided on its record `old`
-- without writing anything (decide::decide): the record to write and the
-- units this charge adds to it, or nil when the counter refuses.
local function decide(old, now, cost, confirmed, p)
  local r = current(old, now, p.code, p.fresh_start, p.fresh_end)
  local plan = math.max(r.u - r.g, 0)
  local room = math.max(p.hard - plan, 0)
  local available = room + r.b
  -- Too large: it could never fit, whatever the reset brings.
  if cost > p.ceiling and cost > available then
    return nil
  end
  local from_grant = 0
  if cost > room then
    local need = cost - room
    if r.b >= need then
      from_grant = need
    elseif p.cap >= 0 and math.max(plan + cost - p.hard, 0) > p.cap then
      return nil
    end
  end
  if p.confirm_above >= 0 and not confirmed and available > 0 and cost > p.confirm_above * available then
    return nil
  end
  local was = r.u
  r.u = math.min(r.u + cost, MAX)
  r.g = math.min(r.g + from_grant, r.u)
  r.b = r.b - from_grant
  local used = math.max(r.u - r.g, 0)
  for j, level in ipairs(p.levels) do
    local mask = bit.lshift(1, j - 1)
    if used >= level and bit.band(r.w, mask) == 0 then
      r.w = bit.bor(r.w, mask)
    end
  end
  if p.pace_used >= 0 then
    local span = math.max(r.e - r.s, 1)
    local elapsed = math.min(math.max(now - r.s, 0), span)
    local ahead = used / p.hard >= p.pace_used and elapsed / span < p.pace_before
    if ahead and bit.band(r.f, 1) == 0 then
      r.f = bit.bor(r.f, 1)
    end
  end
  return r, r.u - was
end

-- Writes a charged record and, with a marker, what the charge took
-- ('<window start>:<units>'), for `cancel`.
local function charged(k, m, r, took)
  write_key(k, r)
  if m then
    redis.call('SET', m, r.s .. ':' .. took, 'EX', REMEMBER)
  end
end

-- charge now cost confirmed <one counter's parameters (limit_at)>
local function charge()
  local now, cost, confirmed = tonumber(ARGV[2]), math.min(tonumber(ARGV[3]), MAX), ARGV[4] == '1'
  local p, past = limit_at(5)
  if not p or past <= #ARGV then
    return redis.error_reply('quota: malformed charge arguments')
  end
  local old = read()
  -- Cancelled before it arrived: it charges nothing.
  if marker and redis.call('EXISTS', marker) == 1 then
    return answer(old, old)
  end
  local r, took = decide(old, now, cost, confirmed, p)
  if not r then
    return answer(old, old)
  end
  charged(key, marker, r, took)
  return answer(old, r)
end

-- charge_stack now cost confirmed <parameters of counter 1> <of counter 2> ...
--   [capped most]
-- KEYS: counter 1, its marker, counter 2, its marker, ... (one hash tag, one
-- charge id), and, for a stack with a member cap, the cap's key last (an odd
-- count of keys); its arguments then end with the capped counter's position
-- (from 1) and the most the cap may be. A stacked cell's limits: the request
-- is charged to every counter or to none. Each counter is decided as
-- `charge` decides it (the capped one against the limits the cap leaves), none
-- written until all admit; a cancel that arrived first on any counter makes
-- it charge nothing. Answers each counter's record before and after, in
-- order, then the cap's record (when given its key), in one flat array.
local function charge_stack()
  local now, cost, confirmed = tonumber(ARGV[2]), math.min(tonumber(ARGV[3]), MAX), ARGV[4] == '1'
  local counters = math.floor(#KEYS / 2)
  local cap_key = nil
  if #KEYS % 2 == 1 then cap_key = KEYS[#KEYS] end
  local layout = "quota: charge_stack takes a counter and its marker per limit"
    .. " (then a member cap's key, with its counter's position and most as the last two arguments)"
  if counters < 1 then
    return redis.error_reply(layout)
  end
  local params, i = {}, 5
  for c = 1, counters do
    params[c], i = limit_at(i)
    if not params[c] then
      return redis.error_reply('quota: malformed limit arguments for counter ' .. c)
    end
  end
  local position, most
  if cap_key then
    position, most = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
    if i + 1 ~= #ARGV or not (position and most) or position < 1 or position > counters
        or position ~= math.floor(position) or most < 0 or most ~= math.floor(most) then
      return redis.error_reply(layout)
    end
  elseif i <= #ARGV then
    return redis.error_reply('quota: more limit arguments than counters')
  end
  local cap_record = cap_key and read_key(cap_key)
  local cap = cap_of(cap_record)
  if cap then
    params[position] = capped(params[position], cap, most)
  end
  local olds, news, took = {}, {}, {}
  local admitted = true
  for c = 1, counters do
    olds[c] = read_key(KEYS[2 * c - 1])
    -- Cancelled before it arrived: it charges nothing.
    if redis.call('EXISTS', KEYS[2 * c]) == 1 then
      admitted = false
    end
  end
  for c = 1, counters do
    if not admitted then break end
    news[c], took[c] = decide(olds[c], now, cost, confirmed, params[c])
    admitted = news[c] ~= nil
  end
  local out = {}
  for c = 1, counters do
    local after = olds[c]
    if admitted then
      charged(KEYS[2 * c - 1], KEYS[2 * c], news[c], took[c])
      after = news[c]
    end
    for _, v in ipairs(answer(olds[c], after)) do table.insert(out, v) end
  end
  if cap_key then
    for _, v in ipairs(flat(cap_record)) do table.insert(out, v) end
  end
  return out
end

-- Adds `delta` (at most `most`) to the record `old` if its window still
-- starts at `window_start`, writes it, and answers (old, new); a correction
-- that changes nothing writes nothing.
local function adjusted(old, window_start, delta, most)
  if delta > 0 then
    delta = math.min(delta, most, MAX)
  end
  if not old or old.s ~= window_start or delta == 0 then
    return answer(old, old)
  end
  local r = copy(old)
  if delta > 0 then
    r.u = math.min(r.u + delta, MAX)
  else
    local back = math.min(-delta, r.u)
    local from_grant = math.min(back, r.g)
    r.g = r.g - from_grant
    r.b = math.min(r.b + from_grant, MAX)
    r.u = r.u - back
  end
  write(r)
  return answer(old, r)
end

-- adjust window_start delta most: a refund (delta < 0) or more usage
-- (delta > 0, adding at most `most`), only while the window the request was
-- charged in is still stored.
local function adjust()
  local window_start, delta, most = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local old = read()
  if not first_time() then
    return answer(old, old)
  end
  return adjusted(old, window_start, delta, most)
end

-- cancel (KEYS[2]: the charge's marker): gives back what that charge took,
-- once; a charge that has not run yet never will.
local function cancel()
  local old = read()
  local charged = redis.call('GET', marker)
  redis.call('SET', marker, 'x', 'EX', REMEMBER)
  if not charged or charged == 'x' then
    return answer(old, old)
  end
  local sep = string.find(charged, ':', 1, true)
  return adjusted(old, tonumber(string.sub(charged, 1, sep - 1)), -tonumber(string.sub(charged, sep + 1)), 0)
end

-- grant units: adds to the grant balance (a missing counter is created with
-- an ended window, so the next charge opens its real one).
local function grant()
  local old = read()
  local r = old and copy(old) or {c = 0, s = 0, e = 0, u = 0, g = 0, b = 0, w = 0, f = 0}
  r.b = math.min(r.b + tonumber(ARGV[2]), MAX)
  write(r)
  return answer(old, r)
end

-- cap units|none (KEYS[1]: a member's cap): sets the cap to `units` (1 to
-- MAX), a record of window code CAP_CODE and an endless window that never
-- expires, or deletes it ('none'). Answers the record before and after.
local function set_cap()
  local old = read()
  if ARGV[2] == 'none' then
    redis.call('DEL', key)
    return answer(old, nil)
  end
  local units = tonumber(ARGV[2])
  if not units or units < 1 or units > MAX or units ~= math.floor(units) then
    return redis.error_reply('quota: a member cap is a whole number from 1 to 2^53 - 1, or none')
  end
  local r = {c = CAP_CODE, s = 0, e = MAX, u = units, g = 0, b = 0, w = 0, f = 0}
  redis.call('HSET', key, 'c', r.c, 's', r.s, 'e', r.e, 'u', r.u, 'g', r.g, 'b', r.b, 'w', r.w, 'f', r.f)
  redis.call('PERSIST', key)
  return answer(old, r)
end

-- add now delta code fresh_start fresh_end: the approximate mode's sync. Adds
-- what one Envoy admitted locally since its last sync (a negative delta gives
-- units back) to the open window, or to a fresh one, never refusing: the
-- Envoy already answered those requests.
local function add()
  local now, delta = tonumber(ARGV[2]), tonumber(ARGV[3])
  local code, fresh_start, fresh_end = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local old = read()
  if not first_time() then
    return answer(old, old)
  end
  local r = current(old, now, code, fresh_start, fresh_end)
  r.u = math.min(math.max(r.u + delta, r.g), MAX)
  write(r)
  return answer(old, r)
end

-- The lease mode (quota_core::lease): an Envoy (a holder) reserves blocks of
-- a counter's units and admits from them on its own. A holder's share of the
-- counter lives in the counter's hash, field 'h:<holder>' =
-- '<window start>:<granted>:<spent>': units granted to it in that window
-- (less what it gave back) and, of those, units it reported spent. Every
-- granted unit is counted in u at once, so the units of all blocks together
-- never pass the limit; a holder gives back only units it knows it holds
-- unspent (a grant whose answer it has not read yet stays its own).

-- The holders' shares of record `r`'s window: a map holder field -> {granted, spent}.
local function shares(k, r)
  local out = {}
  local fields = redis.call('HGETALL', k)
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, 2) == 'h:' then
      local s, granted, spent = string.match(fields[i + 1], '^(-?%d+):(%d+):(%d+)$')
      if s and r and tonumber(s) == r.s then
        out[name] = {granted = tonumber(granted), spent = tonumber(spent)}
      else
        out[name] = false
      end
    end
  end
  return out
end

-- Units held unspent by every holder of record `r`'s window but `except`.
local function unspent(all, except)
  local n = 0
  for name, share in pairs(all) do
    if share and name ~= except then
      n = n + math.max(share.granted - share.spent, 0)
    end
  end
  return math.min(n, MAX)
end

-- lease now need holder spent spent_window give fraction_ppm most warned flags
--   <the counter's parameters (limit_at)>
-- KEYS[1]: the counter; KEYS[2], with give > 0, the release's marker (a
-- release retried applies once). The holder reports `spent`, the units it
-- admitted in the window starting at spent_window; gives back `give` units it
-- holds unspent (at most what this share holds unspent); then, unless it only
-- gives back, is topped up: granted at least `need` units (or none at all
-- when fewer than `need` are left), else what brings its unspent units to one
-- block: the fraction `fraction_ppm` / 10^6 of the plan's units not yet
-- reserved (at least one), at most `most` (-1: no bound), never more than is
-- left under the hard limit plus the cap past it (no bound when the cell
-- admits past hard without a cap). The warning bits
-- it reports are kept with the window's. Answers the record before and after
-- (after: u less every holder's unspent units, the usage spent so far), then
-- the units granted now, this holder's granted and spent, and the units the
-- other holders hold unspent.
local function lease()
  local now, need, holder = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
  local spent, spent_window, give = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local ppm, most, warned, flags = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
  local p, past = limit_at(12)
  if not (now and need and spent and spent_window and give and ppm and most and warned and flags and p)
      or past <= #ARGV or need < 0 or spent < 0 or give < 0 or ppm < 1 or ppm > 1000000
      or not string.match(holder, '^[0-9a-f]+$') then
    return redis.error_reply('quota: malformed lease arguments')
  end
  local old = read()
  local r = current(old, now, p.code, p.fresh_start, p.fresh_end)
  local field = 'h:' .. holder
  local all = shares(key, r)
  -- Shares of ended windows go with them.
  for name, share in pairs(all) do
    if not share then
      redis.call('HDEL', key, name)
      all[name] = nil
    end
  end
  local mine = all[field] or {granted = 0, spent = 0}
  if spent_window == r.s then
    spent = math.min(spent, MAX)
    if spent > mine.spent then
      -- Spent past its grants (never by construction): counted all the same.
      if spent > mine.granted then
        r.u = math.min(r.u + (spent - mine.granted), MAX)
        mine.granted = spent
      end
      mine.spent = spent
    end
    r.w = bit.bor(r.w, warned)
    r.f = bit.bor(r.f, flags)
  end
  local granted_now = 0
  if give > 0 then
    if spent_window == r.s and first_time() then
      local back = math.min(give, mine.granted - mine.spent, r.u)
      mine.granted = mine.granted - back
      r.u = r.u - back
    end
  else
    local limit = MAX
    if p.cap >= 0 then limit = math.min(p.hard + p.cap, MAX) end
    local room = math.max(limit - r.u, 0)
    local base = math.min(room, 1)
    if r.u < p.hard then base = math.min(room, p.hard - r.u) end
    local block = math.max(math.ceil(base * (ppm / 1000000)), 1)
    if most >= 0 then block = math.min(block, most) end
    -- Topped up to one block unspent (or to what the request needs).
    local held = math.max(mine.granted - mine.spent, 0)
    if need > room then
      granted_now = 0
    else
      granted_now = math.min(math.max(need, block - held), room)
    end
    r.u = math.min(r.u + granted_now, MAX)
    mine.granted = mine.granted + granted_now
  end
  write(r)
  redis.call('HSET', key, field, r.s .. ':' .. mine.granted .. ':' .. mine.spent)
  all[field] = mine
  local shown = copy(r)
  shown.u = math.max(r.u - unspent(all, nil), 0)
  local out = answer(old, shown)
  for _, v in ipairs({granted_now, mine.granted, mine.spent, unspent(all, field)}) do table.insert(out, v) end
  return out
end

if op == 'charge' then
  return charge()
elseif op == 'charge_stack' then
  return charge_stack()
elseif op == 'adjust' then
  return adjust()
elseif op == 'add' then
  return add()
elseif op == 'lease' then
  return lease()
elseif op == 'cancel' and marker then
  return cancel()
elseif op == 'grant' then
  return grant()
elseif op == 'cap' then
  return set_cap()
elseif op == 'view' then
  -- Every key given (one caller's counters, sharing a hash tag): one record
  -- each; a leased counter's usage without the units its holders hold unspent.
  local out = {}
  for i = 1, #KEYS do
    local r = read_key(KEYS[i])
    if r then r.u = math.max(r.u - unspent(shares(KEYS[i], r), nil), 0) end
    for _, v in ipairs(flat(r)) do table.insert(out, v) end
  end
  return out
end
return redis.error_reply('quota: unknown operation ' .. tostring(op))
