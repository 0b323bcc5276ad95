package policy

import (
	"fmt"
	"strings"
)

// Effect is what a decision lets happen.
type Effect uint8

const (
	// Deny refuses the request. It is the zero value so that a forgotten Decision fails closed.
	Deny Effect = iota
	// Allow lets the request proceed at once.
	Allow
	// RequireApproval holds the request until a quorum of approvers agrees.
	RequireApproval
)

var effectNames = [...]string{Deny: "deny", Allow: "allow", RequireApproval: "require_approval"}

func (e Effect) String() string {
	if int(e) < len(effectNames) {
		return effectNames[e]
	}
	return fmt.Sprintf("effect(%d)", e)
}

// ParseEffect returns the Effect named s.
func ParseEffect(s string) (Effect, error) {
	for i, n := range effectNames {
		if n == s {
			return Effect(i), nil
		}
	}
	return Deny, fmt.Errorf("unknown effect %q (want allow, deny or require_approval)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (e Effect) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (e *Effect) UnmarshalText(b []byte) error {
	v, err := ParseEffect(string(b))
	if err != nil {
		return err
	}
	*e = v
	return nil
}

// Tier says how much a policy protects; break-glass uses it to pick the approval path.
type Tier uint8

// The tiers, lowest first. The zero value is TierUnset; Compile makes it TierMedium.
const (
	TierUnset Tier = iota
	TierLow
	TierMedium
	TierHigh
	TierCritical
)

var tierNames = [...]string{TierUnset: "", TierLow: "low", TierMedium: "medium", TierHigh: "high", TierCritical: "critical"}

func (t Tier) String() string {
	if int(t) < len(tierNames) {
		return tierNames[t]
	}
	return fmt.Sprintf("tier(%d)", t)
}

// ParseTier returns the Tier named s.
func ParseTier(s string) (Tier, error) {
	for i, n := range tierNames {
		if i > 0 && n == s {
			return Tier(i), nil
		}
	}
	return TierUnset, fmt.Errorf("unknown tier %q (want low, medium, high or critical)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (t Tier) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Tier) UnmarshalText(b []byte) error {
	v, err := ParseTier(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Class is the kind of thing an action does, as far as policy is concerned. Front ends
// classify wire traffic into exactly one Class per request.
type Class uint8

// The action classes. ClassUnknown is what a front end reports when it cannot tell; policy
// treats it as the most dangerous class, and it is the zero value so it is never assumed safe.
const (
	ClassUnknown Class = iota
	ClassRead
	ClassWrite
	ClassDelete
	ClassDDL
	ClassAdmin
	ClassExec
	// ClassEscalation: gaining power over the system itself rather than using it — in
	// Kubernetes, RBAC writes, impersonation, reading Secrets, minting tokens.
	ClassEscalation
	numClasses
)

var classNames = [...]string{
	ClassUnknown: "unknown", ClassRead: "read", ClassWrite: "write", ClassDelete: "delete",
	ClassDDL: "ddl", ClassAdmin: "admin", ClassExec: "exec", ClassEscalation: "escalation",
}

// classDanger orders the classes from least to most dangerous. A multi-statement request is
// decided by its most dangerous statement; unknown outranks everything.
var classDanger = [...]uint8{
	ClassRead: 0, ClassWrite: 1, ClassDelete: 2, ClassExec: 3, ClassDDL: 4, ClassAdmin: 5, ClassEscalation: 6, ClassUnknown: 7,
}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", c)
}

// MoreDangerous reports whether c is more dangerous than d.
func (c Class) MoreDangerous(d Class) bool { return classDanger[c] > classDanger[d] }

// ParseClass returns the Class named s.
func ParseClass(s string) (Class, error) {
	for i, n := range classNames {
		if n == s {
			return Class(i), nil
		}
	}
	return ClassUnknown, fmt.Errorf("unknown action class %q (want one of %s)", s, strings.Join(classNames[:], ", "))
}

// MarshalText implements encoding.TextMarshaler.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Class) UnmarshalText(b []byte) error {
	v, err := ParseClass(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// classSet is a bit set of classes.
type classSet uint16

const allClasses classSet = 1<<numClasses - 1

func (s classSet) has(c Class) bool { return s&(1<<c) != 0 }
