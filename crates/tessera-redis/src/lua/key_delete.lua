-- SigningKeyStore::delete_signing_key. ARGV: kid.
redis.call('ZREM', P .. 'K', ARGV[A])
return redis.call('DEL', P .. 'k' .. ARGV[A])
