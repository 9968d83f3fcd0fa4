'use strict';
/**
 * Settings that cannot work on this stage fail the package with the fix in the message, so
 * the first `serverless deploy` does not find out in production.
 */
const { sub } = require('./cfn');

// arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL
const STREAM_ARN = /^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:\d{12}:table\/([A-Za-z0-9_.-]{3,255})\/stream\/[^/]+$/;
const STARTING_POSITIONS = ['LATEST', 'TRIM_HORIZON'];

function checkStage(ctx) {
  const { custom } = ctx;
  for (const [param, value] of Object.entries(custom.requiredParams || {})) {
    if (value === '' || value == null) {
      throw new ctx.Error(`${param} is empty on stage ${ctx.stage}: deploy with --param="${param}=..." ` +
        '(docs/deploy.md, "Parameters")');
    }
  }
  const alarms = custom.alarms || {};
  if (!alarms.email) {
    const why = 'alarmEmail is empty: the alarm topics have no subscriber, so no alarm reaches a person. ' +
      'Set --param="alarmEmail=oncall@example.com" (or subscribe your pager to the topics).';
    if (ctx.production) throw new ctx.Error(`${why} Required on stage ${ctx.stage} (productionStage).`);
    ctx.log(`WARNING: ${why}`);
  }
}

/** Where the consumers read from: the stream ARN, the table's name and ARN, the start. */
function usersTable(ctx) {
  const cfg = ctx.custom.usersTable || {};
  const existing = cfg.existingStreamArn || '';
  let name = cfg.name || '';
  if (existing) {
    const m = STREAM_ARN.exec(existing);
    if (!m) {
      throw new ctx.Error(`usersStreamArn '${existing}' is not a DynamoDB stream ARN ` +
        '(arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL): copy LatestStreamArn from describe-table');
    }
    if (name && name !== m[1]) {
      throw new ctx.Error(`usersTableName '${name}' is not the table of usersStreamArn (${m[1]}): ` +
        'leave usersTableName out, it is read from the stream ARN');
    }
    name = m[1];
    delete ctx.R.UsersTable; // a team's own table: create none
  } else {
    name = name || `${ctx.prefix}-users`;
    ctx.R.UsersTable.Properties.TableName = name;
  }
  // A new table has no history: read it all. An existing one: start now, so the first deploy
  // does not replay 24 hours of changes into Slack and the CRM.
  const startingPosition = cfg.startingPosition || (existing ? 'LATEST' : 'TRIM_HORIZON');
  if (!STARTING_POSITIONS.includes(startingPosition)) {
    throw new ctx.Error(`streamStartingPosition '${startingPosition}': use ${STARTING_POSITIONS.join(' or ')}`);
  }
  ctx.service.provider.environment.USERS_TABLE = name;
  return {
    existing: Boolean(existing),
    name,
    streamArn: existing || { 'Fn::GetAtt': ['UsersTable', 'StreamArn'] },
    arn: sub(`arn:\${AWS::Partition}:dynamodb:\${AWS::Region}:\${AWS::AccountId}:table/${name}`),
    startingPosition,
  };
}

module.exports = { checkStage, usersTable, STREAM_ARN };
