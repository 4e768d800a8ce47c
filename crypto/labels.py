"""Every domain-separation label and suite id of protocol version 1, in one place.

A label never appears twice with two meanings: each signature, hash and key
derivation starts with its own label, so bytes made for one purpose are
useless for another.

Statement signatures take their context from the statement's type, which is
open-ended, so they live in a namespace of their own,
`spokes/v1/statement/<type>` NUL: no other label starts with
STATEMENT_SIGNATURE, so no statement type (not even "login" or "message")
can share a context with a login, message or profile signature. Every
signature context ends with its only NUL, so none is a prefix of another.
"""

PREFIX = b"spokes/v1/"

# Signatures over statements: STATEMENT_SIGNATURE + type + NUL + canonical body.
# Only statement contexts start with this (tests/crypto/test_labels.py checks).
STATEMENT_SIGNATURE = b"spokes/v1/statement/"  # followed by the statement type and b"\x00"

# Hashes that name things.
MEMBER_ID = b"spokes/v1/member-id\x00"
NETWORK_ID = b"spokes/v1/network-id\x00"
STATEMENT_ID = b"spokes/v1/statement-id\x00"

# What people compare.
SAFETY_NUMBER = b"spokes/v1/safety-number\x00"
FINGERPRINT = b"spokes/v1/fingerprint\x00"
ROSTER_FINGERPRINT = b"spokes/v1/roster-fingerprint\x00"
REVOCATION_FINGERPRINT = b"spokes/v1/revocation-fingerprint\x00"

# Invite codes: HKDF-SHA256 with this salt and one info label per output.
INVITE_HKDF_SALT = b"spokes/v1/invite"
INVITE_LOOKUP = b"spokes/v1/invite/lookup-id"
INVITE_PAYLOAD_KEY = b"spokes/v1/invite/payload-key"
INVITE_PROOF_KEY = b"spokes/v1/invite/proof-key"
INVITE_CHECKSUM = b"spokes/v1/invite/checksum\x00"
INVITE_PAYLOAD_AAD = b"spokes/v1/invite/payload\x00"
INVITE_PROOF = b"spokes/v1/invite/proof\x00"

# Login: the identity key signs the server's challenge.
LOGIN = b"spokes/v1/login\x00"

# Suites named in keys and ciphertexts.
SIGNATURE_SUITE = "ed25519"
KEM_SUITE_DEFAULT = "MLKEM768_X25519/HKDF_SHA256/AES_256_GCM"

# Groups: roster logs, epochs, messages, profiles (part 2).
ROSTER_HASH = b"spokes/v1/roster-hash\x00"
EPOCH_SECRET_INFO = b"spokes/v1/epoch-secret\x00"
EPOCH_COMMITMENT = b"spokes/v1/epoch/commitment\x00"
EPOCH_SENDER_CHAIN = b"spokes/v1/epoch/sender-chain\x00"
EPOCH_PROFILE_KEY = b"spokes/v1/epoch/profile-key\x00"
CHAIN_MESSAGE_KEY = b"\x01"
CHAIN_NEXT_KEY = b"\x02"
CHAIN_NONCE = b"\x03"
MESSAGE_SIGNATURE = b"spokes/v1/message\x00"
MESSAGE_ID = b"spokes/v1/message-id\x00"
PROFILE_AAD = b"spokes/v1/profile\x00"
PROFILE_SIGNATURE = b"spokes/v1/profile-signature\x00"

# Spokespeople and councils (part 3): the Merkle tree over a group's roster
# that an election commits to (crypto/rostertree.py).
ROSTER_LEAF = b"spokes/v1/roster-leaf\x00"
ROSTER_NODE = b"spokes/v1/roster-node\x00"
# A relayed message names the message it carries by this hash (crypto/relays.py).
RELAY_ORIGINAL = b"spokes/v1/relay-original\x00"
# An expulsion's reason, sealed to each member but the subject (crypto/exclusion.py).
EXPEL_REASON = b"spokes/v1/expel-reason\x00"
# A member's self-revocation, sealed to the cellmate who holds it (crypto/exclusion.py).
DURESS_BOX = b"spokes/v1/duress-box\x00"

# Every signature context that is not a statement's.
OTHER_SIGNATURE_CONTEXTS = (LOGIN, INVITE_PROOF, MESSAGE_SIGNATURE, PROFILE_SIGNATURE)
