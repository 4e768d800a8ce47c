"""The few exceptions crypto/ raises. Verification raises; it never returns False."""


class CryptoError(Exception):
    """Base of every error raised by crypto/."""


class InvalidSignature(CryptoError):
    """A signature or proof did not verify."""


class InvalidStatement(CryptoError):
    """Bytes that do not form a valid statement of the expected kind."""


class InvalidCode(CryptoError):
    """An invite code that is malformed or mistyped."""


class DecryptionFailed(CryptoError):
    """Ciphertext that does not open under this key, context and suite."""


class ChainError(CryptoError):
    """A certificate chain that does not lead to the genesis or is revoked."""


class RuleViolation(CryptoError):
    """A statement that is well formed but breaks a rule of the network."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class KeystoreError(CryptoError):
    """A keystore that cannot be opened: wrong passphrase or damaged file."""
