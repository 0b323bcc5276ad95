package pgwire_test

import "github.com/portcullis/portcullis/policy"

func policySubject(user, team string) policy.Subject {
	return policy.Subject{User: user, Teams: []string{team}}
}
