-- Argo CD health of a glrt.dev DeployToken (argocd-cm: resource.customizations.health.glrt.dev_DeployToken).
-- The rules of kstatus, which Flux applies (docs/operations/gitops.md): Healthy = Current, Progressing =
-- InProgress, Degraded = Failed. One difference, on purpose: a DeployToken the operator has not written a status
-- for yet is Progressing here, where kstatus says Current.
local hs = {}
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the DeployToken"
  return hs
end

local generation = obj.metadata.generation
if status.observedGeneration ~= nil and generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "DeployToken generation is " .. generation .. ", but latest observed generation is " ..
    status.observedGeneration
  return hs
end

local function describe(condition)
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  return reason .. message
end

-- Reconciling=True: the operator is working on it; Stalled=True: it cannot go on until someone fixes the cause.
for _, condition in ipairs(status.conditions) do
  if condition.type == "Reconciling" and condition.status == "True" then
    hs.status = "Progressing"
    hs.message = describe(condition)
    return hs
  end
  if condition.type == "Stalled" and condition.status == "True" then
    hs.status = "Degraded"
    hs.message = describe(condition)
    return hs
  end
end

for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    if condition.status == "True" then
      hs.status = "Healthy"
      hs.message = condition.message or "Ready"
    else
      hs.status = "Progressing"
      hs.message = describe(condition)
    end
    return hs
  end
end

hs.status = "Healthy"
hs.message = "No Ready condition"
return hs
