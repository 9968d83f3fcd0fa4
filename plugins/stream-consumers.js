'use strict';
/**
 * Generates, from `custom.streamConsumers` (one block per consumer), everything a stream
 * consumer needs, so no setting is written twice:
 *   - the function (handler, FAILURE_POLICY and queue/bucket/table environment),
 *   - its `stream` event on the source `custom.streamSource` chooses (stream-consumers/source.js:
 *     the table's DynamoDB stream, or Kinesis Data Streams for DynamoDB through an enhanced
 *     fan-out consumer of its own) with the per-policy settings (ReportBatchItemFailures always;
 *     hard-fail: bisect, retries, max record age; every policy: an on-failure destination),
 *   - its failure queue (SSE, 14-day retention, redrive to the parking queue) and parking queue,
 *   - its least-privilege role statements (serverless-iam-roles-per-function),
 *   - with `circuitBreaker: { failures, probeSeconds }`: the sink's circuit breaker settings
 *     (CIRCUIT_*) and the right to its own item of CircuitTable (streamkit/circuit.py),
 *   - its alarms (IteratorAge Maximum, Errors, failure-queue depth and oldest age, parking depth).
 * Also the users table unless `usersStreamArn` points at an existing stream, and the alarms
 * of the non-stream functions. `serverless package` fails when more than two readers would
 * share a DynamoDB stream (source.checkReaderBudget).
 */

const { emitSource, checkReaderBudget } = require('./stream-consumers/source');
const { defineFunctionSchema, pinLambdaPlatform, pruneFunctionPackages } = require('./stream-consumers/packages');

const POLICIES = ['soft-fail', 'hard-fail', 'dlq-capture'];

const logicalPrefix = (name) => name.split('-').map((p) => p[0].toUpperCase() + p.slice(1)).join('');
const envKey = (name) => name.toUpperCase().replace(/-/g, '_');
const arn = (logicalId) => ({ 'Fn::GetAtt': [logicalId, 'Arn'] });
const ref = (logicalId) => ({ Ref: logicalId });
const sub = (text) => ({ 'Fn::Sub': text });

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
      'after:aws:package:finalize:mergeCustomProviderResources': () => {
        this.dropUnusedDefaultRole();
        checkReaderBudget(this.serverless);
      },
    };
  }

  naming() {
    return this.serverless.getProvider('aws').naming;
  }

  generate() {
    if (this.done) return;
    this.done = true;
    pinLambdaPlatform(this.serverless);
    const service = this.serverless.service;
    const custom = service.custom || {};
    const consumers = custom.streamConsumers || {};
    const stage = service.provider.stage;
    const serviceName = service.service;
    const resources = (service.resources = service.resources || {});
    resources.Resources = resources.Resources || {};
    const R = resources.Resources;
    const alarmsOn = custom.alarms || {};
    const topic = ref('AlarmTopic');

    const existingStreamArn = custom.usersTable.existingStreamArn || '';
    // Teams with a table already: point at its stream, create no table.
    if (existingStreamArn) delete R.UsersTable;
    resources.Outputs = resources.Outputs || {};
    const source = emitSource(this.serverless, { R, O: resources.Outputs, serviceName, stage, existingStreamArn });
    const streamArn = source.streamArn;

    const alarm = (id, props) => {
      R[id] = {
        Type: 'AWS::CloudWatch::Alarm',
        Properties: {
          AlarmActions: [topic],
          OKActions: [topic],
          TreatMissingData: 'notBreaching',
          EvaluationPeriods: 1,
          Period: 60,
          ...props,
        },
      };
    };

    const queueArns = [];
    for (const [name, c] of Object.entries(consumers)) {
      if (!POLICIES.includes(c.policy)) {
        throw new this.serverless.classes.Error(
          `custom.streamConsumers.${name}.policy is '${c.policy}': use one of ${POLICIES.join(', ')}`);
      }
      const P = logicalPrefix(name);
      const failureQ = `${P}FailureQueue`;
      const parkingQ = `${P}ParkingQueue`;
      queueArns.push(arn(failureQ), arn(parkingQ));
      R[parkingQ] = {
        Type: 'AWS::SQS::Queue',
        Properties: {
          QueueName: `${serviceName}-${stage}-${name}-parking`,
          SqsManagedSseEnabled: true,
          MessageRetentionPeriod: 1209600,
        },
      };
      R[failureQ] = {
        Type: 'AWS::SQS::Queue',
        Properties: {
          QueueName: `${serviceName}-${stage}-${name}-failures`,
          SqsManagedSseEnabled: true,
          MessageRetentionPeriod: 1209600,
          // Longer than the reprocess function's timeout, so a message in flight is not
          // handed to a second worker.
          VisibilityTimeout: custom.failureQueueVisibilityTimeout,
          // Safety net only: the reprocess worker parks after its own attempt count; this
          // catches receivers that never delete (the budget also covers operator samples).
          RedrivePolicy: { deadLetterTargetArn: arn(parkingQ), maxReceiveCount: custom.failureQueueMaxReceiveCount },
        },
      };

      const fnName = name;
      const { filterPatterns, ...sourceFields } = source.event(name, c, P);
      const stream = {
        ...sourceFields,
        batchSize: c.batchSize,
        batchWindow: c.batchWindowSeconds,
        startingPosition: c.startingPosition || 'TRIM_HORIZON',
        functionResponseType: 'ReportBatchItemFailures',
        parallelizationFactor: c.parallelizationFactor || 1,
        maximumRetryAttempts: c.maximumRetryAttempts,
        maximumRecordAgeInSeconds: c.maximumRecordAgeInSeconds,
        bisectBatchOnFunctionError: c.policy === 'hard-fail',
        destinations: { onFailure: { arn: arn(failureQ), type: 'sqs' } },
      };
      if (filterPatterns) stream.filterPatterns = filterPatterns;

      // Stream read rights are added by serverless-iam-roles-per-function from the event.
      const statements = [
        // The on-failure destination (Lambda sends with the function's role) and, for
        // dlq-capture, the captures themselves.
        { Effect: 'Allow', Action: ['sqs:SendMessage'], Resource: [arn(failureQ)] },
        ...source.statements(name, P),
      ];
      const environment = {
        FAILURE_POLICY: c.policy,
        FAILURE_QUEUE_URL: ref(failureQ),
        PARKING_QUEUE_URL: ref(parkingQ),
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
          throw new this.serverless.classes.Error(
            `custom.streamConsumers.${name}.circuitBreaker.failures is '${cb.failures}': a whole number of ` +
            'consecutive transient failures, at least 1 (leave circuitBreaker out for no breaker)');
        }
        if (!R.CircuitTable) {
          throw new this.serverless.classes.Error(
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
      if (c.policy === 'dlq-capture' || c.policy === 'hard-fail') {
        environment.LEDGER_TABLE = ref('LedgerTable');
        statements.push(c.policy === 'dlq-capture'
          ? { Effect: 'Allow', Action: ['dynamodb:BatchWriteItem'], Resource: [arn('LedgerTable')] }
          : { Effect: 'Allow', Action: ['dynamodb:UpdateItem', 'dynamodb:Query'],
            Resource: [arn('LedgerTable'), sub('${LedgerTable.Arn}/index/byState')] });
      }
      statements.push(...(c.iamRoleStatements || []));

      service.functions[fnName] = {
        name: `${serviceName}-${stage}-${fnName}`,
        handler: c.handler,
        description: `${name}: users-table change consumer (${c.policy}, ${source.kind} source)`,
        timeout: c.timeout,
        memorySize: c.memorySize,
        environment,
        iamRoleStatements: statements,
        events: [{ stream }],
        requirements: c.requirements,
        package: { patterns: custom.streamFunctionPatterns || [] },
      };
      const lambdaFn = this.naming().getLambdaLogicalId(fnName);

      alarm(`${P}IteratorAgeAlarm`, {
        AlarmDescription: `${name} is falling behind the users stream (IteratorAge, Maximum)`,
        Namespace: 'AWS/Lambda', MetricName: 'IteratorAge', Statistic: 'Maximum',
        Dimensions: [{ Name: 'FunctionName', Value: ref(lambdaFn) }],
        Threshold: c.iteratorAgeAlarmMs || alarmsOn.iteratorAgeMs,
        ComparisonOperator: 'GreaterThanThreshold',
        EvaluationPeriods: alarmsOn.iteratorAgeEvaluationPeriods,
      });
      alarm(`${P}ErrorsAlarm`, {
        AlarmDescription: `${name} invocations are failing`,
        Namespace: 'AWS/Lambda', MetricName: 'Errors', Statistic: 'Sum',
        Dimensions: [{ Name: 'FunctionName', Value: ref(lambdaFn) }],
        Threshold: alarmsOn.errors, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
      alarm(`${P}FailureQueueDepthAlarm`, {
        AlarmDescription: `${name} has captured failures waiting for reprocessing`,
        Namespace: 'AWS/SQS', MetricName: 'ApproximateNumberOfMessagesVisible', Statistic: 'Maximum',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [failureQ, 'QueueName'] } }],
        Threshold: alarmsOn.failureQueueDepth, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        Period: 300,
      });
      alarm(`${P}FailureQueueAgeAlarm`, {
        AlarmDescription: `${name}'s oldest captured failure is getting old (retention is 14 days)`,
        Namespace: 'AWS/SQS', MetricName: 'ApproximateAgeOfOldestMessage', Statistic: 'Maximum',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [failureQ, 'QueueName'] } }],
        Threshold: alarmsOn.oldestFailureSeconds, ComparisonOperator: 'GreaterThanThreshold',
        Period: 300,
      });
      alarm(`${P}ParkingQueueDepthAlarm`, {
        AlarmDescription: `${name} has parked messages that need a person`,
        Namespace: 'AWS/SQS', MetricName: 'ApproximateNumberOfMessagesVisible', Statistic: 'Maximum',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [parkingQ, 'QueueName'] } }],
        Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', Period: 300,
      });
    }

    // Functions that serve every consumer: the queue URLs by consumer, and their alarms.
    for (const fnName of custom.allConsumerFunctions || []) {
      const fn = service.functions[fnName];
      if (!fn) continue;
      fn.environment = fn.environment || {};
      fn.environment.LEDGER_TABLE = ref('LedgerTable');
      for (const name of Object.keys(consumers)) {
        const P = logicalPrefix(name);
        fn.environment[`${envKey(name)}_FAILURE_QUEUE_URL`] = ref(`${P}FailureQueue`);
        fn.environment[`${envKey(name)}_PARKING_QUEUE_URL`] = ref(`${P}ParkingQueue`);
        fn.environment[`${envKey(name)}_FAILURE_POLICY`] = consumers[name].policy;
      }
      // Which stream the source is, for the reprocess worker (resolving on-failure ranges, rewind).
      fn.environment.STREAM_SOURCE = source.kind;
      fn.environment.STREAM_ARN = streamArn;
      for (const st of fn.iamRoleStatements || []) {
        if (st.Resource === 'ALL_CONSUMER_QUEUES') st.Resource = queueArns;
        if (JSON.stringify(st.Action) === '["USERS_STREAM_READ"]') st.Action = source.readActions;
        if (st.Resource === 'USERS_STREAM') st.Resource = [streamArn];
        if (st.Resource === 'ALL_CONSUMER_FUNCTIONS') {
          // By name, not GetAtt: no dependency cycle between the functions.
          st.Resource = Object.keys(consumers).map((name) => sub(
            `arn:\${AWS::Partition}:lambda:\${AWS::Region}:\${AWS::AccountId}:function:${serviceName}-${stage}-${name}`));
        }
      }
      const P = logicalPrefix(fnName);
      alarm(`${P}ErrorsAlarm`, {
        AlarmDescription: `${fnName} invocations are failing`,
        Namespace: 'AWS/Lambda', MetricName: 'Errors', Statistic: 'Sum',
        Dimensions: [{ Name: 'FunctionName', Value: ref(this.naming().getLambdaLogicalId(fnName)) }],
        Threshold: alarmsOn.errors, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
    }

    // A placeholder left unresolved would deploy as a literal (and invalid) resource.
    const placeholders = ['ALL_CONSUMER_QUEUES', 'USERS_STREAM', 'ALL_CONSUMER_FUNCTIONS', 'USERS_STREAM_READ'];
    for (const [fnName, fn] of Object.entries(service.functions)) {
      for (const st of fn.iamRoleStatements || []) {
        if (placeholders.includes(st.Resource) || [].concat(st.Action).some((a) => placeholders.includes(a))) {
          throw new this.serverless.classes.Error(
            `functions.${fnName}: ${st.Resource} / ${st.Action} placeholders are only resolved for ` +
            'custom.allConsumerFunctions');
        }
      }
    }
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
StreamConsumers.prototype.dropUnusedDefaultRole = function dropUnusedDefaultRole() {
  const template = this.serverless.service.provider.compiledCloudFormationTemplate;
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
