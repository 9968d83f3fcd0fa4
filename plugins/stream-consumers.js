'use strict';
/**
 * Generates, from `custom.streamConsumers` (one block per consumer), everything a stream
 * consumer needs, so no setting is written twice:
 *   - the function (handler, FAILURE_POLICY and queue/bucket/table environment, its package),
 *   - its `stream` event on the source `custom.streamSource` chooses (stream-consumers/source.js:
 *     the table's DynamoDB stream, or Kinesis Data Streams for DynamoDB through an enhanced
 *     fan-out consumer of its own) with the per-policy settings (ReportBatchItemFailures always;
 *     hard-fail: bisect, retries, max record age; every policy: an on-failure destination,
 *     for hard-fail an S3 bucket that keeps the whole failed invocation: on-failure.js),
 *   - its failure queue (SSE, retention, redrive to the parking queue) and parking queue,
 *   - with `circuitBreaker: { failures, probeSeconds }`: the sink's circuit breaker settings
 *     (CIRCUIT_*) and the right to its own item of CircuitTable (streamkit/circuit.py),
 *   - its least-privilege role statements (serverless-iam-roles-per-function),
 *   - its alarms (finalize.js, once the template is complete).
 * Also: the users table unless `usersStreamArn` points at an existing stream (its name then
 * comes from the ARN), the stage checks that fail a package which cannot work (checks.js),
 * the alarm topics and their subscriptions, one zip per function (packages.js), and the
 * reader budget: `serverless package` fails when more than two readers would share a DynamoDB
 * stream (source.checkReaderBudget).
 */
const { emitSource, checkReaderBudget } = require('./stream-consumers/source');
const { defineFunctionSchema, pinLambdaPlatform, pruneFunctionPackages } = require('./stream-consumers/packages');
const { logicalPrefix, envKey, arn, ref, sub, asBool, RETAIN } = require('./stream-consumers/cfn');
const { checkStage, usersTable } = require('./stream-consumers/checks');
const { onFailureBucket } = require('./stream-consumers/on-failure');
const { finalize } = require('./stream-consumers/finalize');

const POLICIES = ['soft-fail', 'hard-fail', 'dlq-capture'];
// Role-statement placeholders in serverless.yml, resolved for custom.allConsumerFunctions.
const PLACEHOLDERS = ['ALL_CONSUMER_QUEUES', 'USERS_STREAM', 'USERS_STREAM_READ', 'USERS_STREAM_DESCRIBE', 'USERS_TABLE',
  'ON_FAILURE_OBJECTS', 'ON_FAILURE_BUCKETS', 'ALL_CONSUMER_FUNCTIONS'];

class StreamConsumers {
  constructor(serverless, options) {
    this.serverless = serverless;
    this.options = options || {};
    defineFunctionSchema(serverless);
    const log = (msg) => serverless.cli.log(msg);
    this.hooks = {
      'before:package:initialize': () => this.generate(),
      'before:deploy:function:initialize': () => this.generate(),
      'before:invoke:local:invoke': () => this.generate(),
      'after:package:createDeploymentArtifacts': () => this.keepWsgiFilesAtRoot(),
      'after:deploy:function:packageFunction': () => this.keepWsgiFilesAtRoot(),
      // after serverless-python-requirements injected everything into every zip
      'before:package:compileFunctions': () => pruneFunctionPackages(serverless, log),
      'before:deploy:function:deploy': () => pruneFunctionPackages(serverless, log, this.options.function),
      'after:aws:package:finalize:mergeCustomProviderResources': () => this.finalize(),
    };
  }

  naming() {
    return this.serverless.getProvider('aws').naming;
  }

  context() {
    const service = this.serverless.service;
    const custom = service.custom || {};
    const stage = service.provider.stage;
    const resources = (service.resources = service.resources || {});
    resources.Resources = resources.Resources || {};
    resources.Outputs = resources.Outputs || {};
    return {
      service, custom, stage,
      serviceName: service.service,
      prefix: `${service.service}-${stage}`,
      R: resources.Resources,
      O: resources.Outputs,
      consumers: custom.streamConsumers || {},
      production: asBool(custom.productionStage),
      retentionDays: Number(custom.failureQueueRetentionDays),
      metricsNamespace: service.provider.environment.POWERTOOLS_METRICS_NAMESPACE,
      onFailureDestinations: {},
      onFailureObjectArns: [],
      onFailureBucketArns: [],
      Error: this.serverless.classes.Error,
      log: (msg) => this.serverless.cli.log(msg),
    };
  }

  generate() {
    if (this.done) return;
    this.done = true;
    pinLambdaPlatform(this.serverless);
    const ctx = (this.ctx = this.context());
    checkStage(ctx);
    ctx.table = usersTable(ctx);
    ctx.source = emitSource(this.serverless, {
      R: ctx.R, O: ctx.O, serviceName: ctx.serviceName, stage: ctx.stage, tableStreamArn: ctx.table.streamArn,
    });
    this.sharedResources(ctx);
    const queueArns = [];
    for (const [name, c] of Object.entries(ctx.consumers)) {
      if (!POLICIES.includes(c.policy)) {
        throw new ctx.Error(`custom.streamConsumers.${name}.policy is '${c.policy}': use one of ${POLICIES.join(', ')}`);
      }
      queueArns.push(...this.consumerQueues(ctx, name));
      this.consumerFunction(ctx, name, c);
      if (c.policy === 'hard-fail') onFailureBucket(ctx, name, c, ctx.service.functions[name]);
    }
    this.allConsumerFunctions(ctx, queueArns);
  }

  /** Retention, the claim-check expiry, the alarm topics' subscriptions. */
  sharedResources(ctx) {
    const { R, custom } = ctx;
    const expiryDays = (Number(custom.reprocessMaxAttempts) + 1) * ctx.retentionDays;
    ctx.objectExpiryDays = expiryDays;
    for (const id of ['FailureBucket', 'ReprocessJobFailureQueue']) Object.assign(R[id], RETAIN);
    for (const rule of R.FailureBucket.Properties.LifecycleConfiguration.Rules) {
      // a claim-checked record outlives every re-send of its envelope (each restarts the
      // queue's retention) and its stay in the parking queue
      if (rule.Prefix === 'claim-checks/') rule.ExpirationInDays = expiryDays;
    }
    R.ReprocessJobFailureQueue.Properties.MessageRetentionPeriod = ctx.retentionDays * 86400;
    const subscribe = (id, topic, email) => {
      if (email) R[id] = { Type: 'AWS::SNS::Subscription', Properties: { TopicArn: ref(topic), Protocol: 'email', Endpoint: email } };
    };
    subscribe('AlarmTopicEmailSubscription', 'AlarmTopic', custom.alarms.email);
    subscribe('TicketTopicEmailSubscription', 'TicketTopic', custom.alarms.ticketEmail || custom.alarms.email);
  }

  /** The failure queue (redriven to the parking queue) and the parking queue. */
  consumerQueues(ctx, name) {
    const P = logicalPrefix(name);
    const { R, custom } = ctx;
    const retention = ctx.retentionDays * 86400;
    R[`${P}ParkingQueue`] = {
      Type: 'AWS::SQS::Queue',
      ...RETAIN,
      Properties: { QueueName: `${ctx.prefix}-${name}-parking`, SqsManagedSseEnabled: true, MessageRetentionPeriod: retention },
    };
    R[`${P}FailureQueue`] = {
      Type: 'AWS::SQS::Queue',
      ...RETAIN,
      Properties: {
        QueueName: `${ctx.prefix}-${name}-failures`,
        SqsManagedSseEnabled: true,
        MessageRetentionPeriod: retention,
        // Longer than the reprocess function's timeout, so a message in flight is not
        // handed to a second worker.
        VisibilityTimeout: custom.failureQueueVisibilityTimeout,
        // Safety net only: the reprocess worker parks after its own attempt count; this
        // catches receivers that never delete (the budget also covers operator samples).
        RedrivePolicy: { deadLetterTargetArn: arn(`${P}ParkingQueue`), maxReceiveCount: custom.failureQueueMaxReceiveCount },
      },
    };
    return [arn(`${P}FailureQueue`), arn(`${P}ParkingQueue`)];
  }

  /** The function, its stream event (on the chosen source) and its role statements. */
  consumerFunction(ctx, name, c) {
    const P = logicalPrefix(name);
    const failureQ = `${P}FailureQueue`;
    const { source } = ctx;
    const { filterPatterns, ...sourceFields } = source.event(name, c, P);
    const stream = {
      ...sourceFields,
      batchSize: c.batchSize,
      batchWindow: c.batchWindowSeconds,
      startingPosition: c.startingPosition || ctx.table.startingPosition,
      functionResponseType: 'ReportBatchItemFailures',
      parallelizationFactor: c.parallelizationFactor || 1,
      maximumRetryAttempts: c.maximumRetryAttempts,
      maximumRecordAgeInSeconds: c.maximumRecordAgeInSeconds,
      bisectBatchOnFunctionError: c.policy === 'hard-fail',
    };
    // hard-fail: an S3 destination, set on the mapping after compile (on-failure.js, finalize.js)
    if (c.policy !== 'hard-fail') stream.destinations = { onFailure: { arn: arn(failureQ), type: 'sqs' } };
    if (filterPatterns) stream.filterPatterns = filterPatterns;

    // Stream read rights are added by serverless-iam-roles-per-function from the event; the
    // source adds what the framework does not derive (a fan-out consumer's SubscribeToShard).
    const statements = [];
    if (c.policy !== 'hard-fail') {
      // The on-failure destination (Lambda sends with the function's role) and, for
      // dlq-capture, the captures themselves.
      statements.push({ Effect: 'Allow', Action: ['sqs:SendMessage'], Resource: [arn(failureQ)] });
    }
    statements.push(...source.statements(name, P));
    const environment = {
      FAILURE_POLICY: c.policy,
      FAILURE_QUEUE_URL: ref(failureQ),
      PARKING_QUEUE_URL: ref(`${P}ParkingQueue`),
      ...(c.environment || {}),
    };
    if (c.policy === 'dlq-capture') {
      environment.FAILURE_BUCKET = ref('FailureBucket');
      statements.push({
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: [sub(`\${FailureBucket.Arn}/claim-checks/${name}/*`)],
      });
    }
    if (c.circuitBreaker) {
      // streamkit/circuit.py: the sink's breaker, its state shared in CircuitTable; this
      // role reads and conditionally updates its own consumer's item and nothing else.
      const cb = c.circuitBreaker;
      if (!Number.isInteger(cb.failures) || cb.failures < 1) {
        throw new ctx.Error(
          `custom.streamConsumers.${name}.circuitBreaker.failures is '${cb.failures}': a whole number of ` +
          'consecutive transient failures, at least 1 (leave circuitBreaker out for no breaker)');
      }
      if (!ctx.R.CircuitTable) {
        throw new ctx.Error(
          `custom.streamConsumers.${name}.circuitBreaker needs the CircuitTable resource (resources.Resources)`);
      }
      environment.CIRCUIT_TABLE = ref('CircuitTable');
      environment.CIRCUIT_FAILURES = String(cb.failures);
      if (cb.probeSeconds !== undefined) environment.CIRCUIT_PROBE_S = String(cb.probeSeconds);
      statements.push({
        Effect: 'Allow',
        Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        Resource: [arn('CircuitTable')],
        Condition: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [name] } },
      });
    }
    // The failure ledger (streamkit/ledger.py): dlq-capture writes its captures in batches;
    // hard-fail records the record its shard is blocked on (and reads which ones, once).
    // With a circuit breaker, a dlq-capture consumer's shard can be held too (the sink is
    // down): it records and resolves the record it waits on, as hard-fail does.
    if (c.policy === 'dlq-capture' || c.policy === 'hard-fail') {
      environment.LEDGER_TABLE = ref('LedgerTable');
      if (c.policy === 'dlq-capture') {
        statements.push({ Effect: 'Allow', Action: ['dynamodb:BatchWriteItem'], Resource: [arn('LedgerTable')] });
      }
      if (c.policy === 'hard-fail' || c.circuitBreaker) {
        statements.push({ Effect: 'Allow', Action: ['dynamodb:UpdateItem', 'dynamodb:Query'],
          Resource: [arn('LedgerTable'), sub('${LedgerTable.Arn}/index/byState')] });
      }
    }
    statements.push(...(c.iamRoleStatements || []));

    ctx.service.functions[name] = {
      name: `${ctx.prefix}-${name}`,
      handler: c.handler,
      description: `${name}: users-table change consumer (${c.policy}, ${source.kind} source)`,
      timeout: c.timeout,
      memorySize: c.memorySize,
      environment,
      iamRoleStatements: statements,
      events: [{ stream }],
      requirements: c.requirements,
      package: { patterns: ctx.custom.streamFunctionPatterns || [] },
    };
  }

  /** Functions that serve every consumer: the queue URLs by consumer, the source, placeholders resolved. */
  allConsumerFunctions(ctx, queueArns) {
    const functions = ctx.service.functions;
    const { source } = ctx;
    for (const fnName of ctx.custom.allConsumerFunctions || []) {
      const fn = functions[fnName];
      if (!fn) continue;
      fn.environment = fn.environment || {};
      fn.environment.LEDGER_TABLE = ref('LedgerTable');
      for (const name of Object.keys(ctx.consumers)) {
        const P = logicalPrefix(name);
        fn.environment[`${envKey(name)}_FAILURE_QUEUE_URL`] = ref(`${P}FailureQueue`);
        fn.environment[`${envKey(name)}_PARKING_QUEUE_URL`] = ref(`${P}ParkingQueue`);
        fn.environment[`${envKey(name)}_FAILURE_POLICY`] = ctx.consumers[name].policy;
      }
      // Which stream the source is, for the reprocess worker (resolving on-failure ranges, rewind).
      fn.environment.STREAM_SOURCE = source.kind;
      fn.environment.STREAM_ARN = source.streamArn;
      for (const st of fn.iamRoleStatements || []) {
        if (st.Resource === 'ALL_CONSUMER_QUEUES') st.Resource = queueArns;
        if (JSON.stringify(st.Action) === '["USERS_STREAM_READ"]') st.Action = source.readActions;
        if (JSON.stringify(st.Action) === '["USERS_STREAM_DESCRIBE"]') st.Action = source.describeActions;
        if (st.Resource === 'USERS_STREAM') st.Resource = [source.streamArn];
        if (st.Resource === 'USERS_TABLE') st.Resource = [ctx.table.arn];
        if (st.Resource === 'ON_FAILURE_OBJECTS') st.Resource = ctx.onFailureObjectArns;
        if (st.Resource === 'ON_FAILURE_BUCKETS') st.Resource = ctx.onFailureBucketArns;
        if (st.Resource === 'ALL_CONSUMER_FUNCTIONS') {
          // By name, not GetAtt: no dependency cycle between the functions.
          st.Resource = Object.keys(ctx.consumers).map((name) => sub(
            `arn:\${AWS::Partition}:lambda:\${AWS::Region}:\${AWS::AccountId}:function:${ctx.prefix}-${name}`));
        }
      }
      if (Array.isArray(fn.iamRoleStatements)) {
        // e.g. ON_FAILURE_OBJECTS / ON_FAILURE_BUCKETS when no consumer is hard-fail
        fn.iamRoleStatements = fn.iamRoleStatements.filter((st) => !(Array.isArray(st.Resource) && st.Resource.length === 0));
      }
    }
    // A placeholder left unresolved would deploy as a literal (and invalid) resource.
    for (const [fnName, fn] of Object.entries(functions)) {
      for (const st of fn.iamRoleStatements || []) {
        if (PLACEHOLDERS.includes(st.Resource) || [].concat(st.Action).some((a) => PLACEHOLDERS.includes(a))) {
          throw new ctx.Error(`functions.${fnName}: ${st.Resource} / ${st.Action} placeholders are only resolved ` +
            'for custom.allConsumerFunctions');
        }
      }
    }
  }

  finalize() {
    const template = this.serverless.service.provider.compiledCloudFormationTemplate;
    if (this.ctx) finalize(template, this.ctx);
    this.dropUnusedDefaultRole(template);
    checkReaderBudget(this.serverless);
  }
}

/**
 * With package.individually, serverless-python-requirements marks every function with
 * `module: '.'`; serverless-wsgi takes any module as "the handler lives in the app's folder"
 * and, in its after-packaging cleanup, looks for its wsgi_handler.py, serverless_wsgi.py and
 * .serverless-wsgi in handlers/ while it wrote them to the service root (it is listed before
 * serverless-python-requirements, so it wrote them before the mark). Clearing the mark before
 * its cleanup runs keeps both steps at the root; serverless-python-requirements sets it again
 * when it injects.
 */
StreamConsumers.prototype.keepWsgiFilesAtRoot = function keepWsgiFilesAtRoot() {
  for (const fn of Object.values(this.serverless.service.functions || {})) {
    if ((fn.handler || '').includes('wsgi_handler.handler') && fn.module === '.') delete fn.module;
  }
};

/** The framework's default role collects every function's stream and queue rights; with a
 * role per function nobody uses it, and it must not linger as the union of everyone's rights. */
StreamConsumers.prototype.dropUnusedDefaultRole = function dropUnusedDefaultRole(template) {
  const id = 'IamRoleLambdaExecution';
  if (!template.Resources[id]) return;
  const rest = { ...template.Resources };
  delete rest[id];
  const text = JSON.stringify({ Resources: rest, Outputs: template.Outputs || {} });
  if (text.includes(`"${id}"`)) return; // still referenced: keep it
  delete template.Resources[id];
  this.serverless.cli.log(`Removed the unused default role ${id} (every function has its own role).`);
};

module.exports = StreamConsumers;
