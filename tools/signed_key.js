// Mints a sigway signed room key: node tools/signed_key.js ROOM [TTL_SECONDS]
// (secret in SIGWAY_AUTH__KEY_SECRET). README "Room authorization".
const crypto = require("crypto");
function signedKey(secret, room, ttlSeconds = 3600) {
  const signed = `${room}.${Math.floor(Date.now() / 1000) + ttlSeconds}`;
  const signature = crypto.createHmac("sha256", secret).update(signed).digest("base64url");
  return `${signed}.${signature}`;
}
const [room, ttl] = process.argv.slice(2);
console.log(signedKey(process.env.SIGWAY_AUTH__KEY_SECRET, room, Number(ttl || 3600)));
