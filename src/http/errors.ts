/**
 * Every error the HTTP API answers is JSON `{ error, code }` (plus `field` when one input is
 * to blame). Status codes come from the error's type: schedkit's typed errors by their
 * stable `code`, fastify's own errors (validation, body parsing) by theirs. Anything else is
 * a fault of ours: 500, logged, with no internals in the body.
 */
import { InvalidCronError, SchedkitError, ValidationError } from '../errors.js';

export interface ErrorBody {
  error: string;
  code: string;
  field?: string;
}

export interface HttpError {
  readonly status: number;
  readonly body: ErrorBody;
  /** True for faults that must be logged (5xx). */
  readonly fault: boolean;
}

/** Stable `SchedkitError.code` → HTTP status. */
const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  ERR_VALIDATION: 400,
  ERR_INVALID_CRON: 400,
  ERR_UNAUTHORIZED: 401,
  ERR_SCHEDULE_NOT_FOUND: 404,
  ERR_UNKNOWN_TASK: 404,
  ERR_DUPLICATE_TASK: 409,
  ERR_LEASE_LOST: 409,
  ERR_LOCK_HELD: 409,
  ERR_STOPPED: 503,
  // Redis over maxmemory: the service is fine, the store is full; retry once memory frees.
  ERR_STORE_OOM: 503,
};

/** fastify's error codes → schedkit's. */
const FASTIFY_CODES: Readonly<Record<string, string>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'ERR_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'ERR_INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'ERR_INVALID_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'ERR_BAD_REQUEST',
  FST_ERR_VALIDATION: 'ERR_VALIDATION',
  FST_ERR_NOT_FOUND: 'ERR_NOT_FOUND',
  FST_ERR_BAD_URL: 'ERR_BAD_URL',
  FST_ERR_MAX_PARAM_LENGTH: 'ERR_URL_TOO_LONG',
};

interface AjvIssue {
  readonly instancePath?: string;
  readonly keyword?: string;
  readonly params?: Record<string, unknown>;
  readonly message?: string;
}

interface FastifyLikeError {
  readonly code?: unknown;
  readonly statusCode?: unknown;
  readonly message?: unknown;
  readonly validation?: readonly AjvIssue[];
  readonly validationContext?: string;
}

export function toHttpError(err: unknown): HttpError {
  if (err instanceof SchedkitError) {
    const status = STATUS_BY_CODE[err.code] ?? 500;
    const body: ErrorBody = { error: err.message, code: err.code };
    if (err instanceof ValidationError || err instanceof InvalidCronError) body.field = err.field;
    return status >= 500 && status !== 503 ? { status, body, fault: true } : { status, body, fault: false };
  }
  const e = (typeof err === 'object' && err !== null ? err : {}) as FastifyLikeError;
  if (Array.isArray(e.validation) && e.validation.length > 0) {
    const { field, message } = describeIssue(e.validationContext ?? 'request', e.validation[0] as AjvIssue);
    return { status: 400, body: { error: `${field}: ${message}`, code: 'ERR_VALIDATION', field }, fault: false };
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    const fstCode = typeof e.code === 'string' ? e.code : '';
    const code = FASTIFY_CODES[fstCode] ?? (status === 404 ? 'ERR_NOT_FOUND' : 'ERR_BAD_REQUEST');
    const full = typeof e.message === 'string' && e.message.length > 0 ? e.message : 'bad request';
    const message = full.length > 300 ? `${full.slice(0, 300)}…` : full; // fastify may echo a huge URL
    return { status, body: { error: message, code }, fault: false };
  }
  return { status: 500, body: { error: 'internal server error', code: 'ERR_INTERNAL' }, fault: true };
}

/** An Ajv issue as `field: message`, naming the exact property (`body.every`, `query.wait`). */
export function describeIssue(context: string, issue: AjvIssue): { field: string; message: string } {
  let field = context === 'querystring' ? 'query' : context;
  for (const part of (issue.instancePath ?? '').split('/')) {
    if (part.length > 0) field += `.${part.replace(/~1/g, '/').replace(/~0/g, '~')}`;
  }
  const params = issue.params ?? {};
  switch (issue.keyword) {
    case 'additionalProperties':
      return { field: `${field}.${String(params['additionalProperty'])}`, message: 'is not a known option' };
    case 'required':
      return { field: `${field}.${String(params['missingProperty'])}`, message: 'is required' };
    case 'type':
      return { field, message: `must be ${String(params['type']).replace(/,/g, ' or ')}` };
    default:
      return { field, message: issue.message ?? 'is invalid' };
  }
}
