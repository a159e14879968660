#!/usr/bin/env bash
# LocalStack ready hook: the KMS key (with an alias) and the 32-byte secret that the
# `aws-kms` and `aws` slots of the localstack test suite use. Idempotent.
set -euo pipefail

ALIAS=alias/kms-envelope-test
SECRET=kms-envelope/test-master-key

if ! awslocal kms describe-key --key-id "$ALIAS" >/dev/null 2>&1; then
  key_id=$(awslocal kms create-key --description "kms-envelope test KEK wrapping key" \
    --key-usage ENCRYPT_DECRYPT --query KeyMetadata.KeyId --output text)
  awslocal kms create-alias --alias-name "$ALIAS" --target-key-id "$key_id"
fi

if ! awslocal secretsmanager describe-secret --secret-id "$SECRET" >/dev/null 2>&1; then
  # 32 random bytes, base64 in SecretString (the `aws` provider also accepts SecretBinary).
  awslocal secretsmanager create-secret --name "$SECRET" \
    --secret-string "$(head -c 32 /dev/urandom | base64 -w0)"
fi

echo "kms-envelope: KMS key $ALIAS and secret $SECRET ready"
