package pgwire_test

import (
	"crypto/sha256"

	"github.com/portcullis/portcullis/configs"
)

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

var subjectBob = policySubject("bob", "sre")

func e2eTLS() configs.TLS { return configs.TLS{SelfSigned: true} }
