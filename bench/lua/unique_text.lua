-- Every request asks for a sentence nobody asked for before, so every
-- request is a cache miss all the way to the speech engine.
-- Arguments (after `--`): the path and query up to `Text=`, and a run id
-- that keeps texts distinct across runs.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1]
  run = args[2]
  counter = 0
end

function request()
  counter = counter + 1
  local text = "Miss " .. run .. " " .. id .. " " .. counter .. " is a fresh sentence to speak."
  return wrk.format("GET", prefix .. (text:gsub(" ", "%%20")))
end
