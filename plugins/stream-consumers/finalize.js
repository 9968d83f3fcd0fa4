'use strict';
/**
 * What needs the complete template (every function, mapping, route and rule compiled):
 *   - mappings: EventCount metrics (polled / dropped events); hard-fail consumers' S3
 *     on-failure destination (the osls schema allows only SQS/SNS in the stream event);
 *   - the HTTP API stage's throttling, and one managed policy for read-only operators
 *     (every GET route) apart from one for the POST routes (reprocess, redrive, other job
 *     kinds, cancel: whatever starts, changes or stops a job);
 *   - every alarm, each with an explicit name, on the page topic (AlarmTopic) or, for
 *     soft-fail consumers, the ticket topic (TicketTopic); on the Kinesis source also one on
 *     the link from the table to the stream (ctx.source.kind, source.js).
 * One function per concern. The consumer alarms hold on both sources: Lambda publishes
 * IteratorAge, DestinationDeliveryFailures and the mapping's EventCount metrics for a
 * Kinesis mapping (on its fan-out consumer) as for a DynamoDB stream one.
 */
const { logicalPrefix, ref, getAtt, sub } = require('./cfn');

const PAGE = 'AlarmTopic';
const TICKET = 'TicketTopic';

function byType(template, type) {
  return Object.entries(template.Resources).filter(([, r]) => r.Type === type);
}

/** {short function name: {logicalId, timeoutS}} */
function functionsOf(template, prefix) {
  const out = {};
  for (const [id, r] of byType(template, 'AWS::Lambda::Function')) {
    const name = String(r.Properties.FunctionName || '');
    if (name.startsWith(`${prefix}-`)) out[name.slice(prefix.length + 1)] = { logicalId: id, timeoutS: r.Properties.Timeout || 6 };
  }
  return out;
}

/** {consumer: mapping logical id} */
function mappingsOf(template, functions) {
  const byLogical = Object.fromEntries(Object.entries(functions).map(([n, f]) => [f.logicalId, n]));
  const out = {};
  for (const [id, r] of byType(template, 'AWS::Lambda::EventSourceMapping')) {
    const target = r.Properties.FunctionName;
    const fnId = target && target['Fn::GetAtt'] ? target['Fn::GetAtt'][0] : target && target.Ref;
    if (byLogical[fnId]) out[byLogical[fnId]] = id;
  }
  return out;
}

// ---- mappings -----------------------------------------------------------------------------
function patchMappings(template, ctx, mappings) {
  for (const [name, id] of Object.entries(mappings)) {
    const props = template.Resources[id].Properties;
    props.MetricsConfig = { Metrics: ['EventCount'] };
    const destination = ctx.onFailureDestinations[name];
    if (destination) props.DestinationConfig = { OnFailure: { Destination: destination } };
  }
}

// ---- operator API -------------------------------------------------------------------------
function patchOperatorApi(template, ctx) {
  const stage = template.Resources.HttpApiStage;
  if (!stage) return;
  const t = ctx.custom.operatorApi || {};
  stage.Properties.DefaultRouteSettings = {
    ...(stage.Properties.DefaultRouteSettings || {}),
    ThrottlingRateLimit: Number(t.throttleRate), ThrottlingBurstLimit: Number(t.throttleBurst),
  };
  const routes = byType(template, 'AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties.RouteKey);
  const reprocessRoutes = routes.filter((k) => k.startsWith('POST '));
  stage.Properties.RouteSettings = Object.fromEntries(reprocessRoutes.map((k) => [k, {
    ThrottlingRateLimit: Number(t.reprocessThrottleRate), ThrottlingBurstLimit: Number(t.reprocessThrottleBurst),
  }]));
  const arnOf = (key) => {
    const [method, path] = key.split(' ');
    const p = path.replace(/\{[^}]+\}/g, '*');
    return sub(`arn:\${AWS::Partition}:execute-api:\${AWS::Region}:\${AWS::AccountId}:\${HttpApi}/*/${method}${p}`);
  };
  const policy = (id, what, keys) => {
    template.Resources[id] = {
      Type: 'AWS::IAM::ManagedPolicy',
      Properties: {
        ManagedPolicyName: `${ctx.prefix}-${what}`,
        Description: `Attach to the operators who may ${what === 'ops-read' ? 'read the operator API' : 'start or cancel reprocess jobs'}`,
        PolicyDocument: {
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Action: ['execute-api:Invoke'], Resource: keys.map(arnOf) }],
        },
      },
    };
    template.Outputs = template.Outputs || {};
    template.Outputs[`${id}Arn`] = { Value: ref(id) };
  };
  policy('OpsApiReadOnlyPolicy', 'ops-read', routes.filter((k) => k.startsWith('GET ')));
  policy('OpsApiReprocessPolicy', 'ops-reprocess', reprocessRoutes);
}

// ---- alarms -------------------------------------------------------------------------------
function alarmFactory(template, prefix) {
  return (id, name, topic, props) => {
    template.Resources[id] = {
      Type: 'AWS::CloudWatch::Alarm',
      Properties: {
        AlarmName: `${prefix}-${name}`,
        AlarmActions: [ref(topic)],
        OKActions: [ref(topic)],
        TreatMissingData: 'notBreaching',
        EvaluationPeriods: 1,
        Period: 60,
        ...props,
      },
    };
  };
}

const metric = (namespace, name, stat, dims) => ({
  Namespace: namespace, MetricName: name, Statistic: stat,
  Dimensions: Object.entries(dims).map(([Name, Value]) => ({ Name, Value })),
});
const mOfN = (cfg) => ({ EvaluationPeriods: cfg.periods, DatapointsToAlarm: cfg.datapoints });
const atLeast = (threshold) => ({ Threshold: threshold, ComparisonOperator: 'GreaterThanOrEqualToThreshold' });

/** Errors (M of N), Throttles, Duration against the timeout: every function. */
function functionAlarms(alarm, cfg, name, fn, topic) {
  const P = logicalPrefix(name);
  const dims = { FunctionName: ref(fn.logicalId) };
  alarm(`${P}ErrorsAlarm`, `${name}-errors`, topic, {
    AlarmDescription: `${name} invocations are failing (crashes, timeouts, configuration errors at cold start)`,
    ...metric('AWS/Lambda', 'Errors', 'Sum', dims), ...atLeast(cfg.errors.threshold), ...mOfN(cfg.errors),
  });
  alarm(`${P}ThrottlesAlarm`, `${name}-throttles`, topic, {
    AlarmDescription: `${name} is throttled (account concurrency)`,
    ...metric('AWS/Lambda', 'Throttles', 'Sum', dims), ...atLeast(1), ...mOfN(cfg.errors),
  });
  alarm(`${P}DurationAlarm`, `${name}-duration`, topic, {
    AlarmDescription: `${name} runs within ${100 - cfg.durationPercentOfTimeout}% of its ${fn.timeoutS} s timeout`,
    ...metric('AWS/Lambda', 'Duration', 'Maximum', dims),
    ...atLeast(Math.round(fn.timeoutS * 1000 * cfg.durationPercentOfTimeout / 100)), ...mOfN(cfg.errors),
  });
}

/** What a stream consumer needs on top: lag, lost on-failure records, mapping drops, queues. */
function consumerAlarms(alarm, cfg, ctx, name, c, fn, mappingId, topic) {
  const fnDims = { FunctionName: ref(fn.logicalId) };
  const P = logicalPrefix(name);
  // Missing IteratorAge means nothing was invoked: a disabled or stuck mapping reads the same
  // as an idle stream, so it must not turn the alarm OK (INSUFFICIENT_DATA instead).
  alarm(`${P}IteratorAgeAlarm`, `${name}-iterator-age`, topic, {
    AlarmDescription: `${name} is falling behind the users stream (IteratorAge, Maximum)`,
    ...metric('AWS/Lambda', 'IteratorAge', 'Maximum', fnDims),
    Threshold: c.iteratorAgeAlarmMs || cfg.iteratorAgeMs, ComparisonOperator: 'GreaterThanThreshold',
    EvaluationPeriods: cfg.iteratorAgeEvaluationPeriods, TreatMissingData: 'missing',
  });
  alarm(`${P}DestinationDeliveryFailuresAlarm`, `${name}-destination-delivery-failures`, PAGE, {
    AlarmDescription: `${name}'s on-failure destination could not be written: the only trace of skipped records is lost`,
    ...metric('AWS/Lambda', 'DestinationDeliveryFailures', 'Sum', fnDims), ...atLeast(1),
  });
  if (mappingId) {
    const uuid = { EventSourceMappingUUID: ref(mappingId) };
    alarm(`${P}DroppedEventsAlarm`, `${name}-dropped-events`, topic, {
      AlarmDescription: `${name}'s mapping dropped records (retries exhausted or too old): see the on-failure destination`,
      ...metric('AWS/Lambda', 'DroppedEventCount', 'Sum', uuid), ...atLeast(1), Period: 300,
    });
    // Written to the table but not polled for a while: a disabled or broken mapping, which
    // IteratorAge cannot show (it needs invocations).
    alarm(`${P}NotReadingAlarm`, `${name}-not-reading`, topic, {
      AlarmDescription: `the users table is written but ${name}'s mapping polls nothing (disabled or broken)`,
      EvaluationPeriods: cfg.notReadingPeriods, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Metrics: [
        { Id: 'writes', ReturnData: false, MetricStat: { Stat: 'Sum', Period: 300, Metric: {
          Namespace: 'AWS/DynamoDB', MetricName: 'ConsumedWriteCapacityUnits',
          Dimensions: [{ Name: 'TableName', Value: ctx.table.name }] } } },
        { Id: 'polled', ReturnData: false, MetricStat: { Stat: 'Sum', Period: 300, Metric: {
          Namespace: 'AWS/Lambda', MetricName: 'PolledEventCount', Dimensions: [{ Name: 'EventSourceMappingUUID', Value: ref(mappingId) }] } } },
        { Id: 'notreading', ReturnData: true, Label: 'written but not polled',
          Expression: 'IF(FILL(writes, 0) > 0 AND FILL(polled, 0) == 0, 1, 0)' },
      ],
    });
  }
  const queue = (q) => ({ QueueName: getAtt(q, 'QueueName') });
  // An idle queue stops sending metrics after ~6 hours even with messages in it: missing
  // data keeps the current state ('ignore') instead of reading OK.
  alarm(`${P}FailureQueueDepthAlarm`, `${name}-failure-queue-depth`, topic, {
    AlarmDescription: `${name} has failures waiting for reprocessing`,
    ...metric('AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'Maximum', queue(`${P}FailureQueue`)),
    ...atLeast(cfg.failureQueueDepth), Period: 300, TreatMissingData: 'ignore',
  });
  alarm(`${P}FailureQueueAgeAlarm`, `${name}-failure-queue-age`, topic, {
    AlarmDescription: `${name}'s oldest waiting failure is getting old (retention is ${ctx.retentionDays} days)`,
    ...metric('AWS/SQS', 'ApproximateAgeOfOldestMessage', 'Maximum', queue(`${P}FailureQueue`)),
    Threshold: cfg.oldestFailureSeconds, ComparisonOperator: 'GreaterThanThreshold', Period: 300,
    TreatMissingData: 'ignore',
  });
  alarm(`${P}ParkingQueueDepthAlarm`, `${name}-parking-queue-depth`, PAGE, {
    AlarmDescription: `${name} has parked messages that need a person`,
    ...metric('AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'Maximum', queue(`${P}ParkingQueue`)),
    ...atLeast(1), Period: 300, TreatMissingData: 'ignore',
  });
  if (c.circuitBreaker) {
    // streamkit/circuit.py counts, per invocation, the records the open circuit kept from the
    // sink (circuit_open): the shard waits for the next probe (dlq-capture, hard-fail) or the
    // records are dropped (soft-fail). In ALARM while invocations keep meeting the open circuit.
    alarm(`${P}CircuitOpenAlarm`, `${name}-circuit-open`, topic, {
      AlarmDescription: `${name}'s sink circuit breaker is open: ${c.policy === 'soft-fail'
        ? 'records are dropped without calling the sink' : 'its shard waits without calling the sink'} ` +
        `until a probe (every ${c.circuitBreaker.probeSeconds || 30} s) gets through`,
      ...metric(ctx.metricsNamespace, 'circuit_open', 'Sum', { consumer: name, service: name }),
      ...atLeast(1), Period: 300,
    });
  }
  if (c.policy === 'soft-fail') {
    // a soft-fail consumer drops what fails, by design: a ticket past a threshold, not a page each
    alarm(`${P}DroppedRecordsAlarm`, `${name}-dropped-records`, TICKET, {
      AlarmDescription: `${name} (soft-fail) dropped more than ${cfg.softFailDropped.threshold} records in ` +
        `${cfg.softFailDropped.periodSeconds / 60} minutes (logged with keys and sequence numbers)`,
      ...metric(ctx.metricsNamespace, 'failed', 'Sum', { consumer: name, service: name }),
      ...atLeast(cfg.softFailDropped.threshold), Period: cfg.softFailDropped.periodSeconds,
    });
  }
}

function fixMathAlarms(template) {
  for (const [, r] of byType(template, 'AWS::CloudWatch::Alarm')) {
    if (r.Properties.Metrics) delete r.Properties.Period;
  }
}

/** Tables, topics, the API, the schedule, the reprocess function's async invocations. */
function sharedAlarms(alarm, cfg, ctx, template, functions) {
  const tables = [['users-table', ctx.table.name, ['GetItem', 'Query', 'Scan', 'PutItem', 'UpdateItem', 'DeleteItem']],
    ['idempotency-table', ref('IdempotencyTable'), ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem']]];
  for (const [what, table, operations] of tables) {
    const P = logicalPrefix(what);
    for (const m of ['ReadThrottleEvents', 'WriteThrottleEvents']) {
      alarm(`${P}${m}Alarm`, `${what}-${m.replace(/[A-Z]/g, (x) => `-${x.toLowerCase()}`).slice(1)}`, PAGE, {
        AlarmDescription: `DynamoDB throttles ${what} requests (${m})`,
        ...metric('AWS/DynamoDB', m, 'Sum', { TableName: table }), ...atLeast(1), Period: 300,
      });
    }
    alarm(`${P}SystemErrorsAlarm`, `${what}-system-errors`, PAGE, {
      AlarmDescription: `DynamoDB answers ${what} requests with 500s (SystemErrors, all operations)`,
      EvaluationPeriods: 1, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Metrics: [
        ...operations.map((op, i) => ({ Id: `m${i}`, ReturnData: false, MetricStat: { Stat: 'Sum', Period: 300, Metric: {
          Namespace: 'AWS/DynamoDB', MetricName: 'SystemErrors',
          Dimensions: [{ Name: 'TableName', Value: table }, { Name: 'Operation', Value: op }] } } })),
        { Id: 'errors', ReturnData: true, Label: 'SystemErrors', Expression: operations.map((_, i) => `FILL(m${i}, 0)`).join(' + ') },
      ],
    });
  }
  for (const topic of [PAGE, TICKET]) {
    alarm(`${topic}FailedNotificationsAlarm`, `${topic === PAGE ? 'alarm' : 'ticket'}-topic-failed-notifications`, PAGE, {
      AlarmDescription: `the ${topic} could not deliver notifications (NumberOfNotificationsFailed)`,
      ...metric('AWS/SNS', 'NumberOfNotificationsFailed', 'Sum', { TopicName: getAtt(topic, 'TopicName') }),
      ...atLeast(1), Period: 300,
    });
  }
  for (const [id] of byType(template, 'AWS::Events::Rule')) {
    // one name per rule (the reprocess function has two: the drain and the rewind schedule)
    alarm(`${id}FailedInvocationsAlarm`, `${id.replace('EventsRule', '-').toLowerCase()}-failed-invocations`, PAGE, {
      AlarmDescription: `the schedule ${id} could not invoke its target (FailedInvocations)`,
      ...metric('AWS/Events', 'FailedInvocations', 'Sum', { RuleName: ref(id) }), ...atLeast(1), Period: 300,
    });
  }
  if (template.Resources.HttpApi) {
    alarm('HttpApi5xxAlarm', 'ops-api-5xx', PAGE, {
      AlarmDescription: 'the operator API answers with server errors (5xx)',
      ...metric('AWS/ApiGateway', '5xx', 'Sum', { ApiId: ref('HttpApi'), Stage: '$default' }),
      ...atLeast(1), ...mOfN(cfg.errors),
    });
  }
  if (functions.reprocess) {
    alarm('ReprocessAsyncEventsDroppedAlarm', 'reprocess-async-events-dropped', PAGE, {
      AlarmDescription: 'reprocess jobs were dropped before they ran (AsyncEventsDropped)',
      ...metric('AWS/Lambda', 'AsyncEventsDropped', 'Sum', { FunctionName: ref(functions.reprocess.logicalId) }),
      ...atLeast(1), Period: 300,
    });
    alarm('ReprocessJobFailureQueueDepthAlarm', 'reprocess-job-failures', PAGE, {
      AlarmDescription: 'a reprocess job failed or expired; its event is in the job-failure queue',
      ...metric('AWS/SQS', 'ApproximateNumberOfMessagesVisible', 'Maximum', { QueueName: getAtt('ReprocessJobFailureQueue', 'QueueName') }),
      ...atLeast(1), Period: 300, TreatMissingData: 'ignore',
    });
  }
}

/** Kinesis source: the table publishes its changes to the stream (KinesisStreamSpecification,
 * or by hand for a team's own table). Written but nothing arrives = the link is off or failing:
 * every consumer's NotReading alarm fires too, this one says where the break is. */
function sourceAlarms(alarm, cfg, ctx, template) {
  if (!ctx.source || ctx.source.kind !== 'kinesis') return;
  const streams = byType(template, 'AWS::Kinesis::Stream').map(([id]) => id);
  for (const id of streams) {
    alarm(`${id}NotPublishedAlarm`, 'users-changes-not-published', PAGE, {
      AlarmDescription: `the users table is written but its Kinesis stream receives nothing: the table's Kinesis ` +
        'streaming destination is off or failing (for your own table: enable-kinesis-streaming-destination, docs/deploy.md)',
      EvaluationPeriods: cfg.notReadingPeriods, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Metrics: [
        { Id: 'writes', ReturnData: false, MetricStat: { Stat: 'Sum', Period: 300, Metric: {
          Namespace: 'AWS/DynamoDB', MetricName: 'ConsumedWriteCapacityUnits',
          Dimensions: [{ Name: 'TableName', Value: ctx.table.name }] } } },
        { Id: 'published', ReturnData: false, MetricStat: { Stat: 'Sum', Period: 300, Metric: {
          Namespace: 'AWS/Kinesis', MetricName: 'IncomingRecords', Dimensions: [{ Name: 'StreamName', Value: ref(id) }] } } },
        { Id: 'notpublished', ReturnData: true, Label: 'written but not published',
          Expression: 'IF(FILL(writes, 0) > 0 AND FILL(published, 0) == 0, 1, 0)' },
      ],
    });
  }
}

function addAlarms(template, ctx, functions, mappings) {
  const cfg = ctx.custom.alarms;
  const alarm = alarmFactory(template, ctx.prefix);
  for (const [name, fn] of Object.entries(functions)) {
    const c = ctx.consumers[name];
    const topic = c && c.policy === 'soft-fail' ? TICKET : PAGE;
    functionAlarms(alarm, cfg, name, fn, topic);
    if (c) consumerAlarms(alarm, cfg, ctx, name, c, fn, mappings[name], topic);
  }
  sharedAlarms(alarm, cfg, ctx, template, functions);
  sourceAlarms(alarm, cfg, ctx, template);
  fixMathAlarms(template);
}

function finalize(template, ctx) {
  const functions = functionsOf(template, ctx.prefix);
  const mappings = mappingsOf(template, functions);
  patchMappings(template, ctx, mappings);
  patchOperatorApi(template, ctx);
  addAlarms(template, ctx, functions, mappings);
}

module.exports = { finalize, PAGE, TICKET };
