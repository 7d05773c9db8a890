/*
 * import_check.c — refuse a wolfSSL session export that this build's own
 * wolfSSL_tls_export() could not have produced, before wolfSSL_tls_import()
 * sees it.
 *
 * wolfSSL 5.7.2's import trusts its input: it copies the cipher specs (key,
 * IV, MAC and tag sizes, cipher and MAC algorithm ids), the record-layer
 * state and some 60 option bytes into the WOLFSSL object unchecked, then
 * keys the ciphers from them (SetKeysSide) while still importing. A crafted
 * blob therefore corrupts memory during the import itself or in the first
 * read or write after it, so a check on the imported object comes too late:
 * this one reads the blob.
 *
 * The rule: every byte of an accepted blob is either
 *  - fixed: equal to what this build exports for the session's protocol and
 *    cipher suite (layout, lengths, section sizes, cipher specs, key and IV
 *    sizes, and every option that changes how wolfSSL reads or writes), or
 *  - one of the values genuine exports of this build carry (a few booleans
 *    and handshake-state bytes that only the handshake reads), or
 *  - data that wolfSSL only feeds to the cipher: sequence numbers, keys, IVs,
 *    TLS 1.3 traffic secrets (a wrong value makes the next record fail its
 *    authentication, nothing more), and two per-record counters that wolfSSL
 *    resets before it reads them (bounded anyway).
 * Only export version 15 (shim/patches/0001) of a TLS (not DTLS) session
 * without peer info (--enable-sessionexport=nopeer) is accepted, with the
 * AEAD cipher suites of ffi/wolfssl.ts DEFAULT_CIPHERS, in TLS 1.2 or 1.3.
 *
 * The layout is wolfSSL_session_export_internal()'s (src/internal.c):
 *   2 bytes  0xA7 0xAF: TLS export, version 15
 *   2 bytes  length of what follows
 *   2 + 66   Options   (ExportOptions)
 *   2 + n    Keys      (ExportKeyState)
 *   2 + 16   CipherSpecs (ExportCipherSpecState; no AES-CBC state follows
 *            for the AEAD suites)
 *   2 + 0    peer info (none: nopeer)
 *   2 + m    TLS 1.3 state (ExportTls13State, shim/patches/0001)
 * tests/import_check_test.ts mutates genuine exports byte by byte.
 *
 * Style: 0 or -errno; no state; no wolfSSL call (it works on bytes only).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define HP_EXPORT __attribute__((visibility("default")))

#define TLS_EXPORT_PROTO 0xA7    /* TLS_EXPORT_PRO */
#define TLS_EXPORT_VERSION 0xAF  /* proto's high nibble, export version 15 */
#define OPTIONS_SIZE 66          /* TLS_EXPORT_OPT_SZ (patched) */
#define SPECS_SIZE 16            /* WOLFSSL_EXPORT_SPC_SZ */
#define AEAD_EXP_IV_SIZE 8       /* AEAD_MAX_EXP_SZ */
#define AEAD_IMP_IV_SIZE 12      /* AEAD_MAX_IMP_SZ */
#define MAX_RECORD_CIPHERTEXT (16384 + 2048) /* encryptSz, padSz bound */
#define TLS13_STATE_FLAGS 0x07   /* TLS13_EXPORT_FLAGS (patch 0001) */

/* wolfSSL_GetVersion() / wolfSSL_SetVersion() protocol ids. */
#define WOLFSSL_TLSV1_2 3
#define WOLFSSL_TLSV1_3 4

/* CipherSpecs values (wolfssl/internal.h). */
#define BULK_AES_GCM 7       /* wolfssl_aes_gcm */
#define BULK_CHACHA 9        /* wolfssl_chacha */
#define CIPHER_AEAD 2        /* aead */
#define MAC_SHA256 4         /* sha256_mac */
#define MAC_SHA384 5         /* sha384_mac */
#define KEA_NONE 0           /* TLS 1.3: no kea in the suite */
#define KEA_ECDHE 7          /* ecc_diffie_hellman_kea */
#define SIG_NONE 0
#define SIG_RSA 1            /* rsa_sa_algo */
#define SIG_ECDSA 3          /* ecc_dsa_sa_algo */
#define PAD_SHA 40           /* PAD_SHA */
#define AEAD_BLOCK 16        /* block_size of the AEAD suites */
#define AEAD_TAG 16          /* aead_mac_size */

/* One accepted cipher suite: its id, protocol, and the specs wolfSSL's
 * SetCipherSpecs() gives it (checked against genuine exports). */
struct suite {
    uint8_t id0, id1;    /* options.cipherSuite0, cipherSuite */
    uint8_t minor;       /* 3: TLS 1.2, 4: TLS 1.3 */
    uint8_t bulk, mac, kea, sig;
    uint8_t key_size, iv_size, hash_size;
};

static const struct suite SUITES[] = {
    /* TLS 1.3 */
    { 0x13, 0x01, 4, BULK_AES_GCM, MAC_SHA256, KEA_NONE, SIG_NONE, 16, 12, 32 },
    { 0x13, 0x02, 4, BULK_AES_GCM, MAC_SHA384, KEA_NONE, SIG_NONE, 32, 12, 48 },
    { 0x13, 0x03, 4, BULK_CHACHA, MAC_SHA256, KEA_NONE, SIG_NONE, 32, 12, 32 },
    /* TLS 1.2, ECDHE with AEAD (the GCM write IV is its 4-byte salt) */
    { 0xC0, 0x2B, 3, BULK_AES_GCM, MAC_SHA256, KEA_ECDHE, SIG_ECDSA, 16, 4, 32 },
    { 0xC0, 0x2F, 3, BULK_AES_GCM, MAC_SHA256, KEA_ECDHE, SIG_RSA, 16, 4, 32 },
    { 0xC0, 0x2C, 3, BULK_AES_GCM, MAC_SHA384, KEA_ECDHE, SIG_ECDSA, 32, 4, 48 },
    { 0xC0, 0x30, 3, BULK_AES_GCM, MAC_SHA384, KEA_ECDHE, SIG_RSA, 32, 4, 48 },
    { 0xCC, 0xA9, 3, BULK_CHACHA, MAC_SHA256, KEA_ECDHE, SIG_ECDSA, 32, 12, 32 },
    { 0xCC, 0xA8, 3, BULK_CHACHA, MAC_SHA256, KEA_ECDHE, SIG_RSA, 32, 12, 32 },
};

/* Options bytes (ExportOptions order) that differ between genuine exports
 * (with another certificate, resumption, tickets or protocol), with the
 * values allowed (bit v of the mask allows v). The booleans among them are
 * read by the handshake only (suite choice, resumption, tickets, which
 * messages to send), which an imported session never runs again: TLS 1.2
 * renegotiation is refused and TLS 1.3 has no second handshake. Every other
 * option byte must equal the template below. */
#define OPT_SEND_VERIFY 0        /* sendVerify: 1 after a full TLS 1.3 handshake */
#define OPT_CACHE_OFF 15         /* sessionCacheOff: resumption off */
#define OPT_RESUMING 18          /* resuming: a resumed session */
#define OPT_HAVE_SESSION_ID 19   /* haveSessionId */
#define OPT_HAVE_RSA 28          /* haveRSA, haveECC, haveDH, haveECDSAsig, */
#define OPT_HAVE_ECC 29          /* haveStaticECC: the server's certificate, */
#define OPT_HAVE_DH 30           /* its signature and key exchange groups */
#define OPT_HAVE_ECDSA_SIG 33
#define OPT_HAVE_STATIC_ECC 34
#define OPT_CREATE_TICKET 44     /* createTicket, useTicket: TLS 1.2 tickets */
#define OPT_USE_TICKET 45
#define OPT_NO_TICKET12 46       /* noTicketTls12, noTicketTls13: resumption off */
#define OPT_NO_TICKET13 47
#define OPT_SUITE0 49            /* cipherSuite0, cipherSuite: SUITES[] */
#define OPT_SUITE 50
#define OPT_SERVER_STATE 51      /* serverState: how the handshake ended */
#define OPT_ACCEPT_STATE 57      /* acceptState */
#define OPT_ASYNC_STATE 58       /* asyncState: reset before each use */
#define OPT_VERSION_MINOR 65     /* version.minor: 3 or 4 */

/* The fixed option bytes, as this build exports them after a completed
 * server handshake (TLS 1.2 and 1.3 differ only in variable bytes): server
 * side, TLS, no DTLS, no compression, no PSK or anonymous suite, no
 * encrypt-then-MAC, no old Poly1305, no close_notify or reset seen,
 * processReply 0 (between records), handshake done, minimum TLS 1.2. */
static const uint8_t OPTIONS_TEMPLATE[OPTIONS_SIZE] = {
    /*  0 sendVerify, verifyPeer, verifyNone, downgrade */ 0, 0, 0, 1,
    /*  4 minDhKeySz, maxDhKeySz, dhKeySz */ 0, 128, 2, 0, 0, 0,
    /* 10 minRsaKeySz, minEccKeySz */ 0, 128, 0, 28,
    /* 14 havePSK, sessionCacheOff, sessionCacheFlushOff, side */ 0, 0, 0, 0,
    /* 18 resuming, haveSessionId, tls, tls1_1, dtls */ 0, 1, 1, 1, 0,
    /* 23 connReset, isClosed, closeNotify, sentNotify */ 0, 0, 0, 0,
    /* 27 usingCompression, haveRSA, haveECC, haveDH */ 0, 0, 0, 0,
    /* 31 (haveNTRU), (haveQSH), haveECDSAsig, haveStaticECC */ 0, 0, 1, 0,
    /* 35 havePeerVerify, usingPSK_cipher, usingAnon_cipher */ 0, 0, 0,
    /* 38 (sendAlertState), partialWrite, quietShutdown, groupMessages */ 0, 0, 0, 0,
    /* 42 oldPoly, useAnon */ 0, 0,
    /* 44 createTicket, useTicket, noTicketTls12, noTicketTls13 */ 0, 0, 0, 0,
    /* 48 processReply, cipherSuite0, cipherSuite */ 0, 0, 0,
    /* 51 serverState, clientState, handShakeState, handShakeDone */ 0, 15, 16, 1,
    /* 55 minDowngrade, connectState, acceptState, asyncState */ 3, 0, 0, 0,
    /* 59 disallowEncThenMac, encThenMac, startedETMRead, startedETMWrite */ 0, 0, 0, 0,
    /* 63 (dtlsStateful), version.major, version.minor */ 0, 3, 0,
};

#define BIT(v) (1u << (v))

/* The values allowed at variable option byte pos, for TLS 1.`minor - 1`;
 * 0 when the byte is fixed. */
static uint32_t options_allowed(int pos, int minor) {
    int tls13 = minor == 4;
    switch (pos) {
    case OPT_SEND_VERIFY:
    case OPT_CACHE_OFF:
    case OPT_RESUMING:
    case OPT_HAVE_SESSION_ID:
    case OPT_HAVE_RSA:
    case OPT_HAVE_ECC:
    case OPT_HAVE_DH:
    case OPT_HAVE_ECDSA_SIG:
    case OPT_HAVE_STATIC_ECC:
    case OPT_CREATE_TICKET:
    case OPT_USE_TICKET:
    case OPT_NO_TICKET12:
    case OPT_NO_TICKET13: return BIT(0) | BIT(1);
    /* SERVER_HELLO_COMPLETE (resumed) or SERVER_HELLODONE_COMPLETE;
     * TLS 1.3: SERVER_FINISHED_COMPLETE */
    case OPT_SERVER_STATE: return tls13 ? BIT(10) : BIT(3) | BIT(8);
    /* TLS13_TICKET_SENT; ACCEPT_THIRD_REPLY_DONE */
    case OPT_ACCEPT_STATE: return tls13 ? BIT(15) : BIT(16);
    /* TLS_ASYNC_BEGIN .. TLS_ASYNC_END */
    case OPT_ASYNC_STATE: return BIT(0) | BIT(1) | BIT(2) | BIT(3) | BIT(4) | BIT(5);
    case OPT_VERSION_MINOR: return BIT(minor);
    default: return 0;
    }
}

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const struct suite *find_suite(uint8_t id0, uint8_t id1, int minor) {
    for (size_t i = 0; i < sizeof SUITES / sizeof SUITES[0]; i++)
        if (SUITES[i].id0 == id0 && SUITES[i].id1 == id1 && SUITES[i].minor == minor)
            return &SUITES[i];
    return NULL;
}

/* The 66 option bytes: the template, the allowed values, a known suite. */
static int check_options(const uint8_t *o, int minor, const struct suite **suite) {
    for (int i = 0; i < OPTIONS_SIZE; i++) {
        if (i == OPT_SUITE0 || i == OPT_SUITE) continue;
        uint32_t allowed = options_allowed(i, minor);
        if (allowed ? o[i] > 31 || !(allowed & BIT(o[i])) : o[i] != OPTIONS_TEMPLATE[i])
            return -EINVAL;
    }
    *suite = find_suite(o[OPT_SUITE0], o[OPT_SUITE], minor);
    return *suite ? 0 : -EINVAL;
}

/* Keys (ExportKeyState, TLS): sequence numbers, two per-record counters,
 * flags, then size-prefixed pairs of secrets whose sizes the suite fixes. */
static int check_keys(const uint8_t *k, uint32_t len, const struct suite *s) {
    uint32_t want = 16 + 4 + 4 + 1 + 1 + 1 + (1 + 2u * s->hash_size) + (1 + 2u * s->key_size) +
                    (1 + 2u * s->iv_size) + AEAD_EXP_IV_SIZE + (1 + 2u * AEAD_IMP_IV_SIZE);
    uint32_t at = 16; /* peer_sequence_number_hi/lo, sequence_number_hi/lo: free */
    if (len != want) return -EPROTO;
    if (be32(k + at) > MAX_RECORD_CIPHERTEXT) return -EINVAL; /* encryptSz */
    at += 4;
    if (be32(k + at) > MAX_RECORD_CIPHERTEXT) return -EINVAL; /* padSz */
    at += 4;
    if (k[at++] != 1) return -EINVAL;                 /* encryptionOn */
    if (k[at++] > 1) return -EINVAL;                  /* decryptedCur */
    if (k[at++] != 0) return -EINVAL;                 /* truncated HMAC */
    if (k[at] != s->hash_size) return -EINVAL;        /* MAC secrets */
    at += 1 + 2u * s->hash_size;
    if (k[at] != s->key_size) return -EINVAL;         /* write keys */
    at += 1 + 2u * s->key_size;
    if (k[at] != s->iv_size) return -EINVAL;          /* write IVs */
    at += 1 + 2u * s->iv_size + AEAD_EXP_IV_SIZE;     /* + aead_exp_IV */
    if (k[at] != AEAD_IMP_IV_SIZE) return -EINVAL;    /* implicit IVs */
    return 0;
}

/* CipherSpecs: exactly the suite's. */
static int check_specs(const uint8_t *c, const struct suite *s) {
    const uint8_t want[SPECS_SIZE] = {
        0, s->key_size, 0, s->iv_size, 0, AEAD_BLOCK, 0, AEAD_TAG,
        s->bulk, CIPHER_AEAD, s->mac, s->kea, s->sig, s->hash_size, PAD_SHA, 0,
    };
    for (int i = 0; i < SPECS_SIZE; i++)
        if (c[i] != want[i]) return -EINVAL;
    return 0;
}

/* TLS 1.3 state (patch 0001): flags, secret size, two secrets; empty for
 * TLS 1.2. */
static int check_tls13_state(const uint8_t *t, uint32_t len, const struct suite *s) {
    uint32_t secret = s->minor == 4 ? s->hash_size : 0;
    if (len != 2 + 2 * secret) return -EPROTO;
    if (t[1] != secret) return -EINVAL;
    if (s->minor == 4 ? (t[0] & ~TLS13_STATE_FLAGS) != 0 : t[0] != 0) return -EINVAL;
    return 0;
}

/* The next section at *at: its 2-byte length, which must fit in len. */
static int section(const uint8_t *blob, uint32_t len, uint32_t *at, uint32_t *size) {
    if (len - *at < 2) return -EPROTO;
    *size = be16(blob + *at);
    *at += 2;
    if (len - *at < *size) return -EPROTO;
    return 0;
}

/* 0 when blob (len bytes), to be imported after wolfSSL_SetVersion(ssl,
 * version), is one this build's wolfSSL_tls_export() could have produced
 * for a TLS 1.2 or 1.3 server session with one of the accepted suites, up
 * to keys, IVs, secrets and sequence numbers. -EPROTO when its layout is
 * not that (lengths, sections), -EINVAL when a field has another value. */
HP_EXPORT int hp_tls_import_check(int version, const uint8_t *blob, uint32_t len) {
    const struct suite *s = NULL;
    uint32_t at = 4, size;
    int minor, rv;

    if (version != WOLFSSL_TLSV1_2 && version != WOLFSSL_TLSV1_3) return -EINVAL;
    minor = version == WOLFSSL_TLSV1_3 ? 4 : 3;
    if (!blob || len < 4 || blob[0] != TLS_EXPORT_PROTO || blob[1] != TLS_EXPORT_VERSION ||
        be16(blob + 2) != len - 2)
        return -EPROTO;

    if ((rv = section(blob, len, &at, &size)) < 0) return rv;
    if (size != OPTIONS_SIZE) return -EPROTO;
    if ((rv = check_options(blob + at, minor, &s)) < 0) return rv;
    at += size;

    if ((rv = section(blob, len, &at, &size)) < 0) return rv;
    if ((rv = check_keys(blob + at, size, s)) < 0) return rv;
    at += size;

    if ((rv = section(blob, len, &at, &size)) < 0) return rv;
    if (size != SPECS_SIZE) return -EPROTO;
    if ((rv = check_specs(blob + at, s)) < 0) return rv;
    at += size;

    if ((rv = section(blob, len, &at, &size)) < 0) return rv;
    if (size != 0) return -EPROTO; /* peer info */

    if ((rv = section(blob, len, &at, &size)) < 0) return rv;
    if ((rv = check_tls13_state(blob + at, size, s)) < 0) return rv;
    at += size;

    return at == len ? 0 : -EPROTO;
}
