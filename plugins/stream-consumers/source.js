'use strict';
/**
 * The stream source the consumers read: `custom.streamSource`, `dynamodb` or `kinesis`.
 *
 *  - dynamodb: each consumer's mapping reads the users table's DynamoDB stream directly.
 *    Supported within the reader budget (two readers per shard): `checkReaderBudget` fails
 *    `serverless package` beyond it, unless `custom.dynamodbStreamReadersAccepted` says so.
 *  - kinesis (Kinesis Data Streams for DynamoDB): the table publishes its changes to a Kinesis
 *    stream this module emits (on-demand, KMS-encrypted with the AWS managed key, retention
 *    `custom.kinesis.retentionHours`), with the table's `KinesisStreamSpecification`
 *    (MICROSECOND creation-time precision: streamkit.ordering relies on it); each consumer
 *    reads it through its own enhanced fan-out consumer (`AWS::Kinesis::StreamConsumer`,
 *    a dedicated 2 MB/s per shard), with the same policy-derived mapping settings.
 *
 * The plugin asks this module, per consumer, for the stream event and the role statements that
 * go with it; nothing here knows about policies or queues. A new consumer in
 * `custom.streamConsumers` gets its fan-out consumer, mapping and rights from the same loop.
 */
const path = require('path');
const fs = require('fs');
const os = require('os');
const { spawnSync } = require('child_process');

const SOURCES = ['dynamodb', 'kinesis'];
const KINESIS_STREAM = 'UsersChangesStream';
const TIMESTAMP_PRECISION = 'MICROSECOND';
const { arn, ref } = require('./cfn');

/** The source named in `custom.streamSource` (default kinesis), checked. */
function sourceKind(serverless) {
  const custom = serverless.service.custom || {};
  const kind = custom.streamSource || 'kinesis';
  if (!SOURCES.includes(kind)) {
    throw new serverless.classes.Error(
      `custom.streamSource is '${kind}': use dynamodb (the table's DynamoDB stream, at most two readers) ` +
      'or kinesis (Kinesis Data Streams for DynamoDB, one enhanced fan-out consumer per stream consumer)');
  }
  return kind;
}

/**
 * Emits the source's resources into `R` (`tableStreamArn`: the users table's DynamoDB stream,
 * this stack's or the one `usersStreamArn` names) and returns what the plugin needs:
 *   kind, streamArn (what USERS_STREAM resolves to), readActions (for USERS_STREAM_READ),
 *   describeActions (for USERS_STREAM_DESCRIBE: shards and retention, no records),
 *   event(name, c, prefix) -> the function's `stream` event fields for its source,
 *   statements(name, prefix) -> role statements beyond what the framework derives.
 */
function emitSource(serverless, { R, O, serviceName, stage, tableStreamArn }) {
  const custom = serverless.service.custom || {};
  const kind = sourceKind(serverless);
  if (kind === 'dynamodb') {
    const streamArn = tableStreamArn; // the users table's DynamoDB stream (checks.usersTable)
    return {
      kind,
      streamArn,
      readActions: ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator'],
      describeActions: ['dynamodb:DescribeStream'],
      event: (name, c) => ({ type: 'dynamodb', arn: streamArn, filterPatterns: c.filterPatterns }),
      statements: () => [],
    };
  }

  const kinesis = custom.kinesis || {};
  const retention = Number(kinesis.retentionHours || 168);
  if (!Number.isInteger(retention) || retention < 24 || retention > 8760) {
    throw new serverless.classes.Error(
      `custom.kinesis.retentionHours is '${kinesis.retentionHours}': a whole number of hours from 24 to 8760 ` +
      '(168 = 7 days, the default; the reprocess worker resolves a hard-fail range while it lasts)');
  }
  R[KINESIS_STREAM] = {
    Type: 'AWS::Kinesis::Stream',
    Properties: {
      Name: `${serviceName}-${stage}-users-changes`,
      StreamModeDetails: { StreamMode: 'ON_DEMAND' },
      RetentionPeriodHours: retention,
      // The AWS managed key: DynamoDB may write and the functions may read without key grants.
      StreamEncryption: { EncryptionType: 'KMS', KeyId: kinesis.kmsKeyId || 'alias/aws/kinesis' },
    },
  };
  const streamArn = arn(KINESIS_STREAM);
  if (R.UsersTable) {
    R.UsersTable.Properties.KinesisStreamSpecification = {
      StreamArn: streamArn,
      ApproximateCreationDateTimePrecision: TIMESTAMP_PRECISION,
    };
  }
  // A team's own table (usersStreamArn set) is pointed at this stream by hand: docs/deploy.md.
  O.UsersChangesStreamArn = {
    Description: 'Kinesis stream the users table publishes its changes to (KinesisStreamSpecification)',
    Value: streamArn,
  };
  const consumerId = (prefix) => `${prefix}StreamConsumer`;
  return {
    kind,
    streamArn,
    readActions: ['kinesis:DescribeStreamSummary', 'kinesis:ListShards', 'kinesis:GetShardIterator',
      'kinesis:GetRecords'],
    describeActions: ['kinesis:DescribeStreamSummary', 'kinesis:ListShards'],
    event: (name, c, prefix) => {
      R[consumerId(prefix)] = {
        Type: 'AWS::Kinesis::StreamConsumer',
        Properties: { StreamARN: streamArn, ConsumerName: `${serviceName}-${stage}-${name}` },
      };
      return {
        type: 'kinesis',
        arn: streamArn,
        consumer: ref(consumerId(prefix)), // Ref: the consumer's ARN
        // Lambda filters a Kinesis record on its decoded JSON `data`: the DynamoDB change record
        filterPatterns: c.filterPatterns && c.filterPatterns.map((pattern) => ({ data: pattern })),
      };
    },
    statements: (name, prefix) => [
      // Enhanced fan-out: Lambda subscribes to each shard through the function's own consumer.
      { Effect: 'Allow', Action: ['kinesis:SubscribeToShard', 'kinesis:DescribeStreamConsumer'],
        Resource: [ref(consumerId(prefix))] },
      { Effect: 'Allow', Action: ['kinesis:DescribeStreamSummary', 'kinesis:ListShards'], Resource: [streamArn] },
    ],
  };
}

/**
 * `serverless package` fails when more than two readers would share a DynamoDB stream. The
 * rule has one owner, scripts/check_readers.py (Python, as the rest of the checks); this runs
 * it on the compiled template, with `custom.dynamodbStreamReadersAccepted` as the only way past.
 */
function checkReaderBudget(serverless) {
  const service = serverless.service;
  const template = service.provider.compiledCloudFormationTemplate;
  const custom = service.custom || {};
  const accepted = custom.dynamodbStreamReadersAccepted;
  const python = (custom.pythonRequirements && custom.pythonRequirements.pythonBin) || process.env.PYTHON_BIN || 'python3';
  const script = path.join(serverless.serviceDir || serverless.config.servicePath, 'scripts', 'check_readers.py');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reader-budget-'));
  const file = path.join(dir, 'template.json');
  try {
    fs.writeFileSync(file, JSON.stringify(template));
    const args = [script, file];
    if (accepted !== undefined && accepted !== null && accepted !== '') args.push('--accept', String(accepted));
    const proc = spawnSync(python, args, { encoding: 'utf8' });
    if (proc.error) {
      throw new serverless.classes.Error(`could not run the reader-budget check (${python} ${script}): ${proc.error.message}`);
    }
    if (proc.status !== 0) {
      throw new serverless.classes.Error(`reader budget: ${(proc.stdout + proc.stderr).trim()}`);
    }
    serverless.cli.log(proc.stdout.trim());
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

module.exports = { SOURCES, KINESIS_STREAM, sourceKind, emitSource, checkReaderBudget };
