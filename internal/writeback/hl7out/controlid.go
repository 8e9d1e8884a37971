package hl7out

import "crypto/sha256"

// MaxControlID is the longest message control id (MSH-10, data type ST)
// HL7 v2.5.1 allows: 20 characters. v2.7 and later allow 199, but a sender
// that does not know its receiver's version keeps to 20.
const MaxControlID = 20

// crockford is the base32 alphabet of the control ids: digits and upper-case
// letters without I, L, O and U, so an id read aloud or copied by hand
// survives, and no HL7 delimiter or escape character can occur.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// ControlID derives a message control id from a longer key that is stable
// for what the message carries (a write-back intent id): the first 100
// bits of the key's SHA-256 digest in Crockford base32, MaxControlID
// characters. The same key always gives the same id, so a message built
// again for the same intent (a retry, a replay, a rebuild after a restart)
// carries the MSH-10 the receiver has seen and can recognise; different
// keys give different ids except with a probability of about n²/2¹⁰¹ for n
// keys (below 10⁻¹² for a billion). The id does not reveal the key: whoever
// has the key computes the id, not the other way round.
func ControlID(key string) string {
	sum := sha256.Sum256([]byte(key))
	var out [MaxControlID]byte
	// 20 digits of 5 bits each from the first 13 bytes (100 of their 104 bits).
	var acc uint64
	bits, n := 0, 0
	for _, b := range sum[:13] {
		acc = acc<<8 | uint64(b)
		bits += 8
		for bits >= 5 && n < MaxControlID {
			bits -= 5
			out[n] = crockford[(acc>>uint(bits))&31]
			n++
		}
		acc &= 1<<uint(bits) - 1 // only the bits not written yet
	}
	return string(out[:])
}
