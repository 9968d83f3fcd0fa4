'use strict';
/**
 * Package per function: each function's zip holds the distributions its own code imports
 * (its `requirements:` list in serverless.yml) and what those require, nothing else.
 *
 * serverless-python-requirements installs requirements.txt once (one resolution, cached) and
 * injects all of it into every zip. After that, deploy/requirements_closure.py computes each
 * function's closure over the installed Requires-Dist metadata, with markers evaluated for the
 * Lambda platform, and this module removes every other distribution's files (from their
 * RECORD) from the function's zip. A stream function then ships no Flask, click or pygments.
 */
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const JSZip = require('jszip');

const FUNCTION_SCHEMA = {
  properties: {
    requirements: { type: 'array', items: { type: 'string' }, minItems: 1 },
  },
};

const MANYLINUX = { arm64: 'manylinux2014_aarch64', x86_64: 'manylinux2014_x86_64' };

/**
 * pip arguments that install Lambda's wheels whatever machine packages (macOS, an arm64
 * laptop, x86 CI): binary wheels only, for Linux on provider.architecture and the runtime's
 * Python. Derived here so the architecture is written once (provider.architecture).
 */
function pinLambdaPlatform(serverless) {
  const service = serverless.service;
  const arch = service.provider.architecture || 'x86_64';
  if (!MANYLINUX[arch]) {
    throw new serverless.classes.Error(`provider.architecture is '${arch}': use arm64 or x86_64`);
  }
  const python = (service.provider.runtime || 'python3.12').replace(/^python/, '');
  service.custom = service.custom || {};
  const reqs = (service.custom.pythonRequirements = service.custom.pythonRequirements || {});
  const extra = reqs.pipCmdExtraArgs || [];
  if (extra.some((a) => /^--(platform|python-version|only-binary)\b/.test(a))) {
    throw new serverless.classes.Error(
      'custom.pythonRequirements.pipCmdExtraArgs: leave --platform/--python-version/--only-binary out; ' +
      'they are derived from provider.architecture and provider.runtime');
  }
  reqs.pipCmdExtraArgs = [...extra, `--platform ${MANYLINUX[arch]}`, '--only-binary=:all:',
    `--python-version ${python}`, '--implementation cp'];
}

/** Lets functions declare `requirements:` without a configuration warning. */
function defineFunctionSchema(serverless) {
  serverless.configSchemaHandler.defineFunctionProperties('aws', FUNCTION_SCHEMA);
}

function pythonFunctions(service, only) {
  const runtime = service.provider.runtime || '';
  return Object.entries(service.functions || {})
    .filter(([name]) => !only || name === only)
    .filter(([, fn]) => (fn.runtime || runtime).startsWith('python') && !fn.image);
}

/** { function: { keep: [...], drop: [...] } } from deploy/requirements_closure.py. */
function closurePlan(serverless, requirementsDir, functions) {
  const service = serverless.service;
  const custom = service.custom || {};
  const reqs = custom.pythonRequirements || {};
  const spec = {
    python: (service.provider.runtime || 'python3.12').replace(/^python/, ''),
    architecture: service.provider.architecture || 'x86_64',
    provided: reqs.noDeploy || [],
    functions: {},
  };
  for (const [name, fn] of functions) {
    if (!Array.isArray(fn.requirements) || fn.requirements.length === 0) {
      throw new serverless.classes.Error(
        `functions.${name}: list the distributions its code imports under requirements: ` +
        '(names from requirements.txt), so its zip holds only those and what they require');
    }
    spec.functions[name] = fn.requirements;
  }
  const script = path.join(serverless.serviceDir, 'deploy', 'requirements_closure.py');
  const proc = spawnSync(reqs.pythonBin || 'python3.12', [script, requirementsDir], {
    input: JSON.stringify(spec), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024,
  });
  if (proc.error || proc.status !== 0) {
    const why = proc.error ? proc.error.message : (proc.stderr || '').trim();
    throw new serverless.classes.Error(`per-function packages: ${why}`);
  }
  return JSON.parse(proc.stdout);
}

async function rewriteZip(file, drop) {
  const zip = await JSZip.loadAsync(fs.readFileSync(file));
  let removed = 0;
  for (const name of Object.keys(zip.files)) {
    if (drop.has(name)) {
      zip.remove(name);
      removed += 1;
    }
  }
  const buffer = await zip.generateAsync({
    type: 'nodebuffer', platform: 'UNIX', compression: 'DEFLATE', compressionOptions: { level: 9 },
  });
  fs.writeFileSync(file, buffer);
  return removed;
}

/**
 * Prune each function's zip to its closure. `only`: one function (`deploy function -f`).
 * Runs after serverless-python-requirements has injected the requirements.
 */
async function pruneFunctionPackages(serverless, log, only) {
  const service = serverless.service;
  if (!(service.package && service.package.individually)) return;
  const requirementsDir = path.join(serverless.serviceDir, '.serverless', 'requirements');
  if (!fs.existsSync(requirementsDir)) return; // nothing was injected
  const functions = pythonFunctions(service, only);
  const result = closurePlan(serverless, fs.realpathSync(requirementsDir), functions);
  for (const note of result.notes || []) log(`per-function packages: ${note}`);
  for (const [name, fn] of functions) {
    const artifact = fn.package && fn.package.artifact;
    if (!artifact) continue;
    const file = path.isAbsolute(artifact) ? artifact : path.join(serverless.serviceDir, artifact);
    const plan = result.functions[name];
    // Root files of the shared install: requirements.txt lists the whole set (it describes no
    // single function), .completed_requirements marks the static cache as complete.
    const removed = await rewriteZip(file, new Set([...plan.drop, 'requirements.txt', '.completed_requirements']));
    log(`${name}: package holds ${plan.keep.length} distributions (${plan.keep.join(', ')}); ` +
        `${removed} files of others removed`);
  }
}

module.exports = { defineFunctionSchema, pinLambdaPlatform, pruneFunctionPackages };
