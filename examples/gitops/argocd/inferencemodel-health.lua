-- Argo CD health check for serving.kinfer.io/InferenceModel, from its status conditions.
-- The same rules as kstatus, which Flux uses: a status for an older generation, or
-- Reconciling=True, is Progressing; Degraded or Stalled True is Degraded; Ready True is Healthy.
local hs = {status = "Progressing", message = "Waiting for the kinfer operator to report status"}
if obj.status == nil then
  return hs
end

local generation = obj.metadata.generation or 0
if (obj.status.observedGeneration or 0) < generation then
  hs.message = "Waiting for the kinfer operator to observe generation " .. generation
  return hs
end

local conditions = {}
for _, condition in ipairs(obj.status.conditions or {}) do
  conditions[condition.type] = condition
end

local function holds(type)
  local c = conditions[type]
  -- A condition computed for an older generation says nothing about the current spec.
  return c ~= nil and c.status == "True" and (c.observedGeneration or generation) >= generation
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

if holds("Degraded") then
  hs.status = "Degraded"
  hs.message = describe(conditions.Degraded)
elseif holds("Stalled") then
  hs.status = "Degraded"
  hs.message = describe(conditions.Stalled)
elseif holds("Ready") and not holds("Reconciling") then
  hs.status = "Healthy"
  hs.message = describe(conditions.Ready)
elseif conditions.Ready ~= nil then
  hs.message = describe(conditions.Ready)
end
return hs
