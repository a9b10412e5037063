import { AuthError, PkiError, TransportError } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { CLOSE_REFUSED, errorFromClose } from '../src/index.js';

describe('errorFromClose (RFC 6455 section 7.4 close codes)', () => {
  it('a normal close (1000) is no error; going away (1001) is E_TRANSPORT_SHUTDOWN; 1006 is E_TRANSPORT_CLOSED', () => {
    expect(errorFromClose(1000, '')).toBeUndefined();
    expect(errorFromClose(1001, '')?.code).toBe('E_TRANSPORT_SHUTDOWN');
    expect(errorFromClose(1006, '')?.code).toBe('E_TRANSPORT_CLOSED');
    expect(errorFromClose(1009, '')?.code).toBe('E_TRANSPORT_MESSAGE_TOO_LARGE');
  });

  it('a refusal (4000) re-creates the peer\'s code in its area class', () => {
    expect(errorFromClose(CLOSE_REFUSED, 'E_AUTH_REPLAY')).toBeInstanceOf(AuthError);
    expect(errorFromClose(CLOSE_REFUSED, 'E_CERT_REVOKED')).toBeInstanceOf(PkiError);
    expect(errorFromClose(CLOSE_REFUSED, 'E_TRANSPORT_IDLE')).toBeInstanceOf(TransportError);
    expect(errorFromClose(CLOSE_REFUSED, 'E_CERT_REVOKED')?.code).toBe('E_CERT_REVOKED');
  });

  it('an unknown code or close code becomes E_TRANSPORT_REFUSED (never trusted as a code)', () => {
    expect(errorFromClose(CLOSE_REFUSED, 'E_MADE_UP')?.code).toBe('E_TRANSPORT_REFUSED');
    expect(errorFromClose(4999, 'E_AUTH_REPLAY')?.code).toBe('E_TRANSPORT_REFUSED');
  });
});
