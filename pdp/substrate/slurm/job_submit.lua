--[[
gpupaas job_submit.lua: every job that asks for GPUs is decided by the gpupaas PDP before slurmctld
accepts it (or accepts a change to it).

The job becomes one deploy_model intent per cluster and sharing strategy among its candidate
partitions (the ones it names, or every partition of its GPU type when it names none): tenant =
the job's account, GPU class from the GRES type, GPUs per node and node count from the request,
sharing from the pool. The count is the most Slurm may allocate, never the least: the top of a
node range (or one node per task when no range bounds them, a bound then written into the job),
times the array elements that may run at once. The intents go to the PDP's HTTP API (POST
/v1/decide/batch) in one call with a short deadline, over a unix socket (a squatter cannot take
a path in a directory only the PDP's user may write, as it could take a TCP port while the PDP is
down); plain HTTP on loopback only where the settings say so explicitly. A partition is kept when its decision is ALLOW and the decision's
constraints admit its pool (isolation, sharing); the job is pinned to the first partition kept,
in the job's own order. One, because tenants reach partitions through partition-scoped
associations, and Slurm 22.05 refuses a multi-partition job then ("Multiple partition job request
not supported when a partition is set in the association"). With none kept, the job is refused
and sbatch prints the reason codes, messages and decision ids.

Fail closed: when the PDP cannot be asked (unreachable, too slow, a malformed answer, a broken
configuration, any error in this script), GPU jobs are refused and say so; jobs without GPUs are
not policy's business and pass. Every path returns explicitly: a bare `return` would admit a job.

Settings come from gpupaas-pdp.lua beside this script (rendered by pdp/substrate/slurm/lua.py),
read again for every GPU job.
slurmctld serialises job_submit calls under one lock, so the PDP's latency is added to every GPU
submission on the cluster: the timeout is sub-second, and answers are cached for a few seconds
keyed on the fields that make the intent. A cached answer is used only after the PDP answered
its readiness check for this job, and any failure to reach the PDP empties the cache: an ALLOW is
never given on the PDP's behalf while it cannot be asked.
--]]

local PLUGIN = "gpupaas"

local function script_dir()
  local source = debug.getinfo(1, "S").source or ""
  return (source:gsub("^@", "")):match("^(.*)/[^/]*$") or "."
end

-- Libraries, loaded once; a failure is remembered and refuses GPU jobs.
local load_error = nil
local socket, cjson, config
do
  local ok, result = pcall(require, "socket")
  if ok then socket = result else load_error = "lua-socket: " .. tostring(result) end
  ok, result = pcall(require, "cjson")
  if ok then cjson = result else load_error = load_error or ("lua-cjson: " .. tostring(result)) end
end

--[[ The settings are read again for every GPU job (a small table, well under a millisecond), so a
rewritten gpupaas-pdp.lua applies from the next job on; slurmctld reloads this script only when
the script itself changes. A settings file that cannot be read refuses GPU jobs. --]]
local SETTINGS_FILE = script_dir() .. "/gpupaas-pdp.lua"
local function load_settings()
  local ok, result = pcall(dofile, SETTINGS_FILE)
  if not ok or type(result) ~= "table" then
    error("the policy check is not configured (" .. SETTINGS_FILE .. ": " .. tostring(result) .. ")")
  end
  config = result
end

local cache = {}

local function log_info(fmt, ...)
  slurm.log_info("%s: " .. fmt, PLUGIN, ...)
end

local function refuse(lines)
  for _, line in ipairs(lines) do
    slurm.log_user("%s", line)
  end
  log_info("refused: %s", table.concat(lines, " | "))
  return slurm.ESLURM_ACCESS_DENIED
end

local function split(text, sep)
  local out = {}
  if text == nil then return out end
  for item in string.gmatch(text, "[^" .. sep .. "]+") do
    out[#out + 1] = item
  end
  return out
end

-- A set field of a job description: nil for nil, NO_VAL, or the empty string.
local function given(value)
  if value == nil or value == "" then return nil end
  if type(value) == "number" and (value == slurm.NO_VAL or value == slurm.NO_VAL16
      or value == slurm.NO_VAL64 or value < 0) then
    return nil
  end
  return value
end

--[[ The GPU request of one TRES string such as "gres:gpu:h100_80gb:2" or "gres/gpu:2":
returns count, type (nil when untyped), or nil when the string asks for no GPU. --]]
local function gpus_in(tres)
  local count, gtype, found = 0, nil, false
  for _, item in ipairs(split(tres, ",")) do
    local spec = item:gsub("^gres[:/]", "")
    local name, rest = spec:match("^([^:]+):?(.*)$")
    if name == "gpu" then
      local parts = split(rest, ":")
      local n, t = 1, nil
      if #parts == 1 then
        if tonumber(parts[1]) then n = tonumber(parts[1]) else t = parts[1] end
      elseif #parts >= 2 then
        t, n = parts[1], tonumber(parts[2])
      end
      if n == nil then error("cannot read the GPU count of '" .. item .. "'") end
      if found and t ~= gtype then error("mixes GPU types in '" .. tres .. "'") end
      found, gtype, count = true, t, count + n
    end
  end
  if not found or count == 0 then return nil end
  return count, gtype
end

--[[ The most nodes Slurm may give the job: the top of its range; without one, each task may
land on a node of its own (a task never spans nodes). --]]
local function node_bound(job)
  local min_nodes, max_nodes = given(job.min_nodes) or 1, given(job.max_nodes)
  if max_nodes then return math.max(min_nodes, max_nodes) end
  return math.max(min_nodes, given(job.num_tasks) or 1)
end

--[[ How many elements of an array may run at once, from "0-15:4,20%3"-like text: every element,
or the throttle after % when it is lower. `known`: the element count when the text is only a
throttle (an update of ArrayTaskThrottle). --]]
local function array_width(spec, known)
  spec = given(spec)
  if spec == nil then return known or 1 end
  local list, throttle = tostring(spec):match("^([^%%]*)%%?(%d*)$")
  if list == nil then error("cannot read the job array '" .. tostring(spec) .. "'") end
  local count = 0
  for _, item in ipairs(split(list, ",")) do
    local first, last, step = item:match("^(%d+)%-(%d+):?(%d*)$")
    if first then
      local a, b, s = tonumber(first), tonumber(last), tonumber(step) or 1
      if b < a or s < 1 then error("cannot read the job array '" .. spec .. "'") end
      count = count + math.floor((b - a) / s) + 1
    elseif item:match("^%d+$") then
      count = count + 1
    else
      error("cannot read the job array '" .. spec .. "'")
    end
  end
  if count == 0 then count = known end
  throttle = tonumber(throttle)
  -- A throttle of 0 lifts the limit: every element may run.
  if throttle and throttle > 0 and (count == nil or throttle < count) then count = throttle end
  if count == nil then error("cannot tell how many elements of the job array may run at once") end
  return count
end

--[[ The job's GPU request at its most: {per_node, nodes, gtype, total}, nodes counting every node
of every array element that may run at once; nil for a job without GPUs. --]]
local function gpu_request(job)
  for _, field in ipairs({ "tres_per_task", "tres_per_socket" }) do
    if given(job[field]) and gpus_in(job[field]) then
      error("GPUs per task or per socket are not supported: ask with --gres=gpu:<type>:<n> or --gpus")
    end
  end
  local width = array_width(job.array_inx, job.array_width)
  local nodes = node_bound(job)
  local per_node, node_type = nil, nil
  if given(job.tres_per_node) then per_node, node_type = gpus_in(job.tres_per_node) end
  local per_job, job_type = nil, nil
  if given(job.tres_per_job) then per_job, job_type = gpus_in(job.tres_per_job) end
  if per_node == nil and per_job == nil then return nil end
  if per_node and per_job then error("give GPUs per node (--gres) or per job (--gpus), not both") end
  if per_job then
    return { per_node = per_job, nodes = width, gtype = job_type, total = per_job * width, node_bound = nodes }
  end
  return { per_node = per_node, nodes = nodes * width, gtype = node_type, total = per_node * nodes * width,
    node_bound = nodes }
end

local function deployment_name(job)
  local name = string.lower(tostring(given(job.name) or "job")):gsub("[^a-z0-9-]+", "-")
  name = ("slurm-" .. name):sub(1, 63):gsub("-+$", "")
  return name
end

local function read_token()
  if not config.token_file then return nil end
  local f = io.open(config.token_file, "r")
  if not f then error("cannot read the PDP token file " .. config.token_file) end
  local token = f:read("*l")
  f:close()
  return token and token:match("^%s*(.-)%s*$") or nil
end

--[[ A connection to the PDP within `deadline`: its unix socket, or TCP on loopback where the
settings name a host and port and say insecure_loopback_http (a process that takes the port
while the PDP is down would be answering for it). --]]
local function connect(left)
  local conn, ok, err, where
  if config.socket then
    local loaded, unix = pcall(require, "socket.unix")
    if not loaded then error("lua-socket without unix sockets: " .. tostring(unix)) end
    conn, where = unix(), config.socket
    conn:settimeout(left(), "t")
    ok, err = conn:connect(config.socket)
  elseif config.host and config.insecure_loopback_http then
    conn, where = socket.tcp(), config.host .. ":" .. config.port
    conn:settimeout(left(), "t")
    ok, err = conn:connect(config.host, config.port)
  else
    error("the settings name no PDP socket (and no loopback HTTP explicitly allowed)")
  end
  if not ok then conn:close(); error("connect to " .. where .. ": " .. tostring(err)) end
  return conn
end

--[[ One HTTP/1.1 exchange with the PDP, connect, send and receive together bounded by
config.timeout (lua-socket bounds each operation, not the call); returns status and body. --]]
local function exchange(method, path, body)
  local deadline = socket.gettime() + config.timeout
  local function left()
    local t = deadline - socket.gettime()
    if t <= 0 then error("no answer within " .. config.timeout .. " s") end
    return t
  end
  -- The PDP answers DENY (ENGINE_TIMEOUT) before this, so a slow engine is an answer, not a hang.
  local budget_ms = math.floor(config.timeout * 1000 * 0.8)
  local headers = {
    method .. " " .. (config.path or "") .. path .. " HTTP/1.1",
    "Host: " .. (config.socket and "localhost" or (config.host .. ":" .. config.port)),
    "Request-Timeout: " .. budget_ms .. "ms",
    "Connection: close",
  }
  if body then
    headers[#headers + 1] = "Content-Type: application/json"
    headers[#headers + 1] = "Content-Length: " .. #body
  end
  local token = read_token()
  if token then headers[#headers + 1] = "Authorization: Bearer " .. token end
  local request = table.concat(headers, "\r\n") .. "\r\n\r\n" .. (body or "")

  local conn = connect(left)
  conn:settimeout(left(), "t")
  local ok, err = conn:send(request)
  if not ok then conn:close(); error("send: " .. tostring(err)) end
  conn:settimeout(left(), "t")
  local response, rerr, partial = conn:receive("*a")
  conn:close()
  response = response or partial
  if not response or response == "" then error("receive: " .. tostring(rerr)) end
  if rerr == "timeout" then error("no answer within " .. config.timeout .. " s") end
  return tonumber(response:match("^HTTP/1%.%d (%d%d%d)")), response:match("\r\n\r\n(.*)$") or ""
end

-- POST the intents; returns the decisions, or raises with what went wrong.
local function ask_pdp(intents)
  local started = socket.gettime()
  local status, payload = exchange("POST", "/v1/decide/batch", cjson.encode({ intents = intents }))
  if status ~= 200 then
    error("PDP answered HTTP " .. tostring(status) .. ": " .. payload:sub(1, 200))
  end
  local decoded = cjson.decode(payload)
  if type(decoded) ~= "table" or type(decoded.decisions) ~= "table" or #decoded.decisions ~= #intents then
    error("PDP answer is not a batch of " .. #intents .. " decisions")
  end
  log_info("asked the PDP about %d cluster(s) in %.1f ms", #intents, (socket.gettime() - started) * 1000)
  return decoded.decisions
end

-- Before a cached answer is used: the PDP (its engine included) answers, now.
local function check_ready()
  local status, payload = exchange("GET", "/readyz", nil)
  if status ~= 200 then error("PDP not ready, HTTP " .. tostring(status) .. ": " .. payload:sub(1, 200)) end
end

local function contains(list, value)
  if type(list) ~= "table" then return false end
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

-- Does the ALLOW decision's constraints admit this partition's pool?
local function admits(constraints, partition)
  local isolation = type(constraints) == "table" and constraints.isolation or nil
  if type(isolation) ~= "table" then return true end
  if isolation.mode == "dedicated" then
    if not contains(isolation.dedicated_pools, partition.pool) then return false end
  elseif partition.isolation ~= "shared" then
    return false
  end
  if type(isolation.sharing_strategies) == "table" and not contains(isolation.sharing_strategies, partition.sharing) then
    return false
  end
  return true
end

--[[ Decide the job: returns the partitions it may run on, and the lines that explain a refusal
(empty when some partition is allowed). --]]
local function decide(job, submit_uid)
  local request = gpu_request(job)
  if request == nil then return nil, {}, nil end
  if load_error then
    error("the policy check is not configured (" .. load_error .. ")")
  end
  load_settings()
  if request.gtype == nil then
    error("name the GPU type: --gres=gpu:<type>:<n> (types: " .. table.concat(config.gres_types, ", ") .. ")")
  end
  local account = given(job.account) or given(job.default_account)
  if account == nil then error("the job has no account: submit with --account=<tenant>") end
  local gpu_class = config.classes[request.gtype]
  if gpu_class == nil then
    return {}, { PLUGIN .. ": GPU type " .. request.gtype .. " is not offered by this cluster (types: "
      .. table.concat(config.gres_types, ", ") .. ")" }
  end

  local asked = split(given(job.partition), ",")
  local candidates = {}
  if #asked == 0 then
    for _, name in ipairs(config.partition_names) do
      if config.partitions[name].gres_type == request.gtype then candidates[#candidates + 1] = name end
    end
  else
    for _, name in ipairs(asked) do
      local p = config.partitions[name]
      if p and p.gres_type == request.gtype then candidates[#candidates + 1] = name end
    end
  end
  if #candidates == 0 then
    return {}, { PLUGIN .. ": none of the partitions [" .. table.concat(asked, ",") .. "] offers GPU type "
      .. request.gtype }
  end

  --[[ One intent per cluster and sharing strategy: a job on a time-sliced (or MIG) pool shares
  its GPUs the way the pool does, so its intent asks for that sharing mode. --]]
  local groups, order = {}, {}
  for _, name in ipairs(candidates) do
    local p = config.partitions[name]
    local key = p.cluster .. "/" .. p.sharing
    if groups[key] == nil then
      groups[key] = { cluster = p.cluster, sharing = p.sharing, partitions = {} }
      order[#order + 1] = key
    end
    table.insert(groups[key].partitions, name)
  end
  local cache_key = table.concat({ account, request.gtype, request.per_node, request.nodes,
    table.concat(candidates, ",") }, "|")
  local cached = cache[cache_key]
  local decisions
  if cached and socket.gettime() - cached.at < config.cache_seconds then
    -- The PDP that gave this answer may be gone since: used only while it answers.
    local ok, err = pcall(check_ready)
    if not ok then
      cache = {}
      error(err, 0)
    end
    decisions = cached.decisions
  else
    local intents = {}
    local user = given(job.user_name) or tostring(submit_uid)
    for _, key in ipairs(order) do
      intents[#intents + 1] = {
        kind = "deploy_model",
        tenant = account,
        actor = "slurm:" .. user,
        deploy_model = {
          deployment = deployment_name(job),
          gpu_class = gpu_class,
          gpus_per_replica = request.per_node,
          replicas = request.nodes,
          cluster = groups[key].cluster,
          sharing = groups[key].sharing,
        },
      }
    end
    local ok, result = pcall(ask_pdp, intents)
    if not ok then
      cache = {}
      error(result, 0)
    end
    decisions = result
    if config.cache_seconds > 0 then cache[cache_key] = { at = socket.gettime(), decisions = decisions } end
  end

  local allowed, explained = {}, {}
  for i, key in ipairs(order) do
    local d = decisions[i]
    local id = tostring(d.decision_id)
    local names = groups[key].partitions
    if d.outcome == "ALLOW" then
      for _, name in ipairs(names) do
        if admits(d.constraints, config.partitions[name]) then
          allowed[#allowed + 1] = name
        else
          explained[#explained + 1] = string.format(
            "%s: partition %s: pool %s is outside the isolation of tenant %s (decision %s)",
            PLUGIN, name, config.partitions[name].pool, account, id)
        end
      end
    else
      for _, reason in ipairs(d.reasons or {}) do
        explained[#explained + 1] = string.format("%s: %s %s: %s (partitions %s, decision %s)",
          PLUGIN, tostring(d.outcome), tostring(reason.code), tostring(reason.message),
          table.concat(names, ","), id)
      end
    end
  end
  -- In the job's own order of partitions (or the configuration's, when it named none).
  local kept = {}
  for _, name in ipairs(allowed) do kept[name] = true end
  local ordered = {}
  for _, name in ipairs(candidates) do
    if kept[name] then ordered[#ordered + 1] = name end
  end
  return ordered, explained, request
end

local function check(job, submit_uid, pin)
  local ok, allowed, explained, request = pcall(decide, job, submit_uid)
  if not ok then
    return refuse({ PLUGIN .. ": GPU job refused, fail closed: " .. tostring(allowed) })
  end
  if allowed == nil then return slurm.SUCCESS end -- no GPUs asked for
  if #allowed == 0 then
    table.insert(explained, 1, PLUGIN .. ": GPU job refused by policy")
    return refuse(explained)
  end
  if pin then
    job.partition = allowed[1]
    -- Held to the node count decided: without a range Slurm could spread the tasks wider.
    if given(job.max_nodes) == nil then job.max_nodes = request.node_bound end
  end
  log_info("account %s allowed on %s, pinned to %s", tostring(given(job.account) or given(job.default_account)),
    table.concat(allowed, ","), pin and allowed[1] or "-")
  return slurm.SUCCESS
end

function slurm_job_submit(job_desc, part_list, submit_uid)
  return check(job_desc, submit_uid, true)
end

--[[ scontrol update: a change of partition, GPUs, node count (either end of the range), tasks,
array throttle or account is decided like a new submission, on the job as it would be after the
change. --]]
function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  local fields = { "partition", "tres_per_node", "tres_per_job", "tres_per_task", "tres_per_socket",
    "account", "min_nodes", "max_nodes", "num_tasks", "array_inx" }
  local changed = false
  for _, field in ipairs(fields) do
    if given(job_desc[field]) then changed = true end
  end
  if not changed then return slurm.SUCCESS end
  local effective = {}
  for _, field in ipairs(fields) do
    if field ~= "array_inx" then
      effective[field] = given(job_desc[field]) or (job_rec and given(job_rec[field])) or nil
    end
  end
  --[[ An array's pending elements: ArrayTaskThrottle arrives as a bare number (0 lifts it). The
  throttle in force is not readable from the job record, so without a new one every pending
  element counts: an update of an array may be refused that its submission was not. --]]
  local elements = given(job_rec and job_rec.array_task_cnt)
  local throttle = tonumber(given(job_desc.array_inx))
  if throttle and throttle > 0 and (elements == nil or throttle < elements) then
    elements = throttle
  end
  effective.array_width = elements
  effective.name = given(job_rec and job_rec.name)
  effective.user_name = tostring(modify_uid)
  return check(effective, modify_uid, false)
end

log_info("loaded (%s)", load_error and ("GPU jobs refused: " .. load_error) or SETTINGS_FILE)
return slurm.SUCCESS
