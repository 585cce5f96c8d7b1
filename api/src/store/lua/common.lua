-- Shared by every script of the store (prepended to each by store/mod.rs).

-- A time (epoch ms, |ms| < 2^53) as text whose byte order is the numeric order: the key
-- of P:roundidx2 entries, a sorted set whose members are all scored 0 and ordered by text.
local function enc(ms)
  if ms >= 0 then return '1' .. string.format('%016d', ms) end
  return '0' .. string.format('%016d', 9007199254740992 + ms)
end

-- A decimal text as a number, with one strtod: this Lua's tonumber() parses a text twice
-- (it checks, then converts), and a decimal fraction costs glibc thousands of instructions.
-- Fails (rather than answering nil) on a text that is not a number.
local function number(text) return text + 0 end

-- The epoch ms of an enc() text.
local function dec(text)
  local n = number(string.sub(text, 2))
  if string.sub(text, 1, 1) == '1' then return n end
  return n - 9007199254740992
end

-- The member of node round `round20` (20 digits) of `cluster` (`keys::round_member` in
-- Rust builds the same): `r:<round>` for the default cluster, `r:<round>:<cluster>` else.
local function round_member(cluster, round20)
  if cluster == 'default' then return 'r:' .. round20 end
  return 'r:' .. round20 .. ':' .. cluster
end

-- The cluster of a node-round member (the inverse of round_member).
local function cluster_of(member)
  if #member > 22 then return string.sub(member, 24) end
  return 'default'
end

