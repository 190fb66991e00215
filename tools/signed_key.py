# Mints a sigway signed room key: python3 tools/signed_key.py ROOM [TTL_SECONDS]
# (secret in SIGWAY_AUTH__KEY_SECRET). README "Room authorization".
import base64, hashlib, hmac, os, sys, time

def signed_key(secret: str, room: str, ttl_seconds: int = 3600) -> str:
    signed = f"{room}.{int(time.time()) + ttl_seconds}"
    mac = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

if __name__ == "__main__":
    print(signed_key(os.environ["SIGWAY_AUTH__KEY_SECRET"], sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3600))
