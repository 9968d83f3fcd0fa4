'use strict';
/**
 * Hard-fail consumers: an S3 on-failure destination. For a stream, SQS and SNS destinations
 * get only the batch's metadata (a sequence range), useless once the stream has trimmed it
 * (24 h); an S3 destination gets the whole failed invocation, records included.
 *
 * Per hard-fail consumer: a bucket of its own (least privilege: the function may write and
 * list only it), whose object-created notifications go to the consumer's failure queue, so
 * the reprocess worker finds them through the same drain. The bucket has a fixed name: the
 * queue policy must name it before the bucket exists (S3 checks the notification target).
 * The destination itself is set on the mapping after compile (finalize.js): the osls schema
 * allows only SQS and SNS in a stream event.
 */
const { logicalPrefix, ref, arn, sub, RETAIN } = require('./cfn');

const MAX_BUCKET_NAME = 63;
const LONGEST_REGION = 'ap-southeast-2'.length + 1; // -<region>
const ACCOUNT = 12 + 1; // -<account id>

function onFailureBucket(ctx, name, c, fn) {
  const P = logicalPrefix(name);
  const bucket = `${P}OnFailureBucket`;
  const policy = `${P}FailureQueuePolicy`;
  const base = `${ctx.prefix}-${name}-failed`;
  if (base !== base.toLowerCase() || base.length + ACCOUNT + LONGEST_REGION > MAX_BUCKET_NAME) {
    throw new ctx.Error(`the on-failure bucket of ${name} would be named '${base}-<account>-<region>': ` +
      `S3 needs lower case and at most ${MAX_BUCKET_NAME} characters; shorten the service, stage or consumer name`);
  }
  const bucketName = `${base}-\${AWS::AccountId}-\${AWS::Region}`;
  const bucketArn = sub(`arn:\${AWS::Partition}:s3:::${bucketName}`);
  const { R } = ctx;
  R[policy] = {
    Type: 'AWS::SQS::QueuePolicy',
    Properties: {
      Queues: [ref(`${P}FailureQueue`)],
      PolicyDocument: {
        Version: '2012-10-17',
        Statement: [{
          Sid: 'OnFailureObjectsNotify',
          Effect: 'Allow',
          Principal: { Service: 's3.amazonaws.com' },
          Action: 'sqs:SendMessage',
          Resource: arn(`${P}FailureQueue`),
          Condition: {
            ArnEquals: { 'aws:SourceArn': bucketArn },
            StringEquals: { 'aws:SourceAccount': ref('AWS::AccountId') },
          },
        }],
      },
    },
  };
  R[bucket] = {
    Type: 'AWS::S3::Bucket',
    ...RETAIN,
    DependsOn: [policy],
    Properties: {
      BucketName: sub(bucketName),
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      VersioningConfiguration: { Status: 'Enabled' },
      LifecycleConfiguration: {
        Rules: [{
          Id: 'expire-failed-invocations', Status: 'Enabled',
          ExpirationInDays: ctx.objectExpiryDays, NoncurrentVersionExpiration: { NoncurrentDays: 7 },
        }],
      },
      NotificationConfiguration: {
        QueueConfigurations: [{ Event: 's3:ObjectCreated:*', Queue: arn(`${P}FailureQueue`) }],
      },
    },
  };
  R[`${bucket}TlsOnly`] = {
    Type: 'AWS::S3::BucketPolicy',
    Properties: {
      Bucket: ref(bucket),
      PolicyDocument: {
        Statement: [{
          Sid: 'DenyInsecureTransport', Effect: 'Deny', Principal: '*', Action: 's3:*',
          Resource: [arn(bucket), sub(`\${${bucket}.Arn}/*`)],
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        }],
      },
    },
  };
  // Lambda writes the failed invocation with the function's role (s3:PutObject, s3:ListBucket).
  fn.iamRoleStatements.push(
    { Effect: 'Allow', Action: ['s3:PutObject'], Resource: [sub(`arn:\${AWS::Partition}:s3:::${bucketName}/*`)] },
    { Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [bucketArn] },
  );
  fn.environment.ON_FAILURE_BUCKET = ref(bucket);
  ctx.onFailureDestinations[name] = bucketArn;
  ctx.onFailureObjectArns = ctx.onFailureObjectArns || [];
  ctx.onFailureObjectArns.push(sub(`arn:\${AWS::Partition}:s3:::${bucketName}/*`));
  ctx.onFailureBucketArns = ctx.onFailureBucketArns || [];
  ctx.onFailureBucketArns.push(bucketArn);
}

module.exports = { onFailureBucket };
