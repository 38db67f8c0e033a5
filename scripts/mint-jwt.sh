#!/bin/bash
# mint-jwt.sh USER_ID [TTL_SECONDS] - print an HS256 JWT for trying the API.
#
# Uses only Debian tools (openssl, base64, tr). The secret comes from
# $CHAT_JWT_SECRET, else from the file $CHAT_JWT_SECRET_FILE, else from
# var/jwt-secret (the one `make run` creates). Extra claims for tests:
#   NBF=<epoch> EXP=<epoch> ALG=<alg in the header>.
set -euo pipefail

user=${1:?usage: mint-jwt.sh USER_ID [TTL_SECONDS]}
ttl=${2:-3600}
here=$(cd "$(dirname "$0")/.." && pwd)

if [ -n "${CHAT_JWT_SECRET:-}" ]; then
    secret=$CHAT_JWT_SECRET
else
    file=${CHAT_JWT_SECRET_FILE:-$here/var/jwt-secret}
    [ -r "$file" ] || { echo "mint-jwt.sh: no secret: set CHAT_JWT_SECRET or \
create $file (make run does)" >&2; exit 1; }
    secret=$(tr -d '\r\n' < "$file")
fi

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

now=$(date +%s)
exp=${EXP:-$((now + ttl))}
# JSON-escape the user id: backslash and double quote
sub=$(printf '%s' "$user" | sed 's/\\/\\\\/g; s/"/\\"/g')
payload="{\"sub\":\"$sub\",\"iat\":$now,\"exp\":$exp${NBF:+,\"nbf\":$NBF}}"
header="{\"alg\":\"${ALG:-HS256}\",\"typ\":\"JWT\"}"

signing_input="$(printf '%s' "$header" | b64url).$(printf '%s' "$payload" | b64url)"
sig=$(printf '%s' "$signing_input" \
      | openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary | b64url)

printf '%s.%s\n' "$signing_input" "$sig"
