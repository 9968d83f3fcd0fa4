'use strict';
/** Small CloudFormation helpers shared by the plugin's modules. */
const logicalPrefix = (name) => name.split('-').map((p) => p[0].toUpperCase() + p.slice(1)).join('');
const envKey = (name) => name.toUpperCase().replace(/-/g, '_');
const ref = (id) => ({ Ref: id });
const getAtt = (id, attr) => ({ 'Fn::GetAtt': [id, attr] });
const arn = (id) => getAtt(id, 'Arn');
const sub = (text) => ({ 'Fn::Sub': text });
const asBool = (v) => v === true || v === 'true';
/** Stateful resources outlive a stack deletion, but a failed first create removes them, so
 * retrying that create never meets "already exists". */
const RETAIN = { DeletionPolicy: 'RetainExceptOnCreate', UpdateReplacePolicy: 'Retain' };

module.exports = { logicalPrefix, envKey, ref, getAtt, arn, sub, asBool, RETAIN };
