package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	alice = &Subject{User: "alice", Teams: []string{"engineering"}}
	bob   = &Subject{User: "bob", Teams: []string{"sre"}}
	carol = &Subject{User: "carol", Teams: []string{"security"}, Roles: []string{"auditor"}}
	dave  = &Subject{User: "dave", Teams: []string{"engineering"}, Groups: []string{"oncall"}}
	erin  = &Subject{User: "erin", Teams: []string{"sre"}}
)

func testSet() *Set {
	return &Set{
		Resources: []Resource{
			{Name: "orders", Kind: "postgres", Labels: map[string]string{"env": "production"}},
			{Name: "staging-db", Kind: "postgres", Labels: map[string]string{"env": "staging"}},
			{Name: "admin-api", Kind: "http", Labels: map[string]string{"env": "production"}},
		},
		Teams: []string{"engineering", "sre", "security"},
		Roles: []string{"auditor", "orders-writer"},
		Policies: []Policy{
			{Name: "prod-read", Match: Match{Resources: ResourceSelector{Labels: map[string]string{"env": "production"}}, Actions: []string{"read"}}, Effect: "allow"},
			{Name: "orders-write", Description: "production writes need an SRE", Match: Match{Resources: ResourceSelector{Names: []string{"orders"}}, Actions: []string{"write", "delete"}, Except: Principals{Roles: []string{"orders-writer"}}},
				Effect: "require_approval", Quorum: &QuorumSpec{RequiredTeams: []string{"sre"}, Timeout: "10m"}},
			{Name: "writer-role", Match: Match{Resources: ResourceSelector{Names: []string{"orders"}}, Actions: []string{"write"}, Principals: Principals{Roles: []string{"orders-writer"}}}, Effect: "allow"},
			{Name: "no-ddl", Tier: "medium", Match: Match{Resources: ResourceSelector{Names: []string{"orders"}}, Actions: []string{"ddl"}}, Effect: "deny", Description: "DDL on orders is break-glass only"},
			{Name: "big-deletes", Tier: "high", Match: Match{Resources: ResourceSelector{Kinds: []string{"postgres"}}, Actions: []string{"delete"}},
				When: "action.estimated_rows > 1000", Effect: "require_approval", Quorum: &QuorumSpec{MinApprovals: 2, MinDistinctTeams: 2, Timeout: "5m"}},
			{Name: "regulated", Match: Match{Resources: ResourceSelector{Names: []string{"orders"}}, Actions: []string{"read"}},
				When: "sets.intersects(action.tables, ['payments', 'cards']) && !('security' in subject.teams)", Effect: "require_approval", Quorum: &QuorumSpec{RequiredTeams: []string{"security"}}},
		},
	}
}

func mustCompile(t testing.TB, s *Set) *Engine {
	t.Helper()
	e, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

func TestEvaluate(t *testing.T) {
	e := mustCompile(t, testSet())
	noon := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	act := func(c Class, tables ...string) *Action { return &Action{Class: c, Tables: tables, EstimatedRows: -1} }
	tests := []struct {
		name     string
		subject  *Subject
		resource string
		action   *Action
		want     Effect
		rules    []string
		def      bool
		tier     Tier
	}{
		{"read allowed", alice, "orders", act(ClassRead, "orders"), Allow, []string{"prod-read"}, false, TierMedium},
		{"write needs approval", alice, "orders", act(ClassWrite), RequireApproval, []string{"orders-write"}, false, TierMedium},
		{"role holder excepted from approval", &Subject{User: "x", Roles: []string{"orders-writer"}}, "orders", act(ClassWrite), Allow, []string{"writer-role"}, false, TierMedium},
		{"ddl denied", dave, "orders", act(ClassDDL), Deny, []string{"no-ddl"}, false, TierMedium},
		{"unknown is most dangerous", alice, "orders", act(ClassUnknown), Deny, []string{"orders-write", "no-ddl"}, false, TierMedium},
		{"small delete", alice, "orders", &Action{Class: ClassDelete, EstimatedRows: 10}, RequireApproval, []string{"orders-write"}, false, TierMedium},
		{"big delete stacks quorums", alice, "orders", &Action{Class: ClassDelete, EstimatedRows: 5000}, RequireApproval, []string{"orders-write", "big-deletes"}, false, TierHigh},
		{"regulated table", alice, "orders", act(ClassRead, "payments"), RequireApproval, []string{"prod-read", "regulated"}, false, TierMedium},
		{"regulated table, security reads", carol, "orders", act(ClassRead, "payments"), Allow, []string{"prod-read"}, false, TierMedium},
		{"no match on production", alice, "admin-api", act(ClassWrite), Deny, nil, true, TierUnset},
		{"no match elsewhere", alice, "staging-db", act(ClassWrite), Allow, nil, true, TierUnset},
		{"unknown resource", alice, "nope", act(ClassRead), Deny, nil, false, TierUnset},
	}
	var d Decision
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.Evaluate(&Request{Subject: tt.subject, Resource: tt.resource, Action: tt.action, Time: noon}, &d)
			if d.Effect != tt.want || !slices.Equal(d.RuleNames(), tt.rules) && !(len(tt.rules) == 0 && len(d.Matched) == 0) || d.Default != tt.def || d.Tier != tt.tier {
				t.Errorf("got %v rules=%v default=%v tier=%v; want %v rules=%v default=%v tier=%v",
					d.Effect, d.RuleNames(), d.Default, d.Tier, tt.want, tt.rules, tt.def, tt.tier)
			}
			if d.Snapshot != e.Snapshot() || d.Reason() == "" {
				t.Errorf("snapshot %q reason %q", d.Snapshot, d.Reason())
			}
		})
	}
}

func TestCombinedQuorum(t *testing.T) {
	e := mustCompile(t, testSet())
	var d Decision
	e.Evaluate(&Request{Subject: alice, Resource: "orders", Action: &Action{Class: ClassDelete, EstimatedRows: 5000}}, &d)
	q := d.Quorum
	if q.MinApprovals != 2 || q.MinDistinctTeams != 2 || !slices.Equal(q.RequiredTeams, []string{"sre"}) || q.Timeout != 5*time.Minute || q.RequesterCanApprove {
		t.Fatalf("combined quorum = %+v", q)
	}
	// The engine's own quorum must not have been changed by the merge.
	if r := e.Rules()[1]; r.Quorum.MinApprovals != 1 || r.Quorum.Timeout != 10*time.Minute {
		t.Fatalf("merge modified the engine's rule: %+v", r.Quorum)
	}
	if !strings.Contains(d.Reason(), "orders-write") || !strings.Contains(d.Reason(), "big-deletes") {
		t.Errorf("reason %q does not name both policies", d.Reason())
	}

	tests := []struct {
		name      string
		approvers []*Subject
		met       bool
		progress  string
	}{
		{"none", nil, false, "orders-write approvals: 0/1, orders-write team sre: 0/1, big-deletes approvals: 0/2, big-deletes distinct teams: 0/2"},
		{"self approval does not count", []*Subject{alice, bob}, false, "orders-write approvals: 1/1 ✓, orders-write team sre: 1/1 ✓, big-deletes approvals: 1/2, big-deletes distinct teams: 1/2"},
		{"same team twice", []*Subject{bob, erin}, false, "orders-write approvals: 2/1 ✓, orders-write team sre: 1/1 ✓, big-deletes approvals: 2/2 ✓, big-deletes distinct teams: 1/2"},
		{"repeat approvals count once", []*Subject{bob, bob}, false, "orders-write approvals: 1/1 ✓, orders-write team sre: 1/1 ✓, big-deletes approvals: 1/2, big-deletes distinct teams: 1/2"},
		{"two teams with sre", []*Subject{bob, carol}, true, "orders-write approvals: 1/1 ✓, orders-write team sre: 1/1 ✓, big-deletes approvals: 2/2 ✓, big-deletes distinct teams: 2/2 ✓"},
		{"two teams without sre", []*Subject{dave, carol}, false, "orders-write approvals: 0/1, orders-write team sre: 0/1, big-deletes approvals: 2/2 ✓, big-deletes distinct teams: 2/2 ✓"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := q.Progress(alice, tt.approvers)
			var terms []string
			for _, term := range p.Terms {
				terms = append(terms, term.String())
			}
			if got := strings.Join(terms, ", "); got != tt.progress || p.Met() != tt.met {
				t.Errorf("progress = %q met=%v; want %q met=%v", got, p.Met(), tt.progress, tt.met)
			}
		})
	}
}

// TestStackedQuorumsNeverLoosen: two approval policies whose approvers differ are each met
// on their own terms; one approval never satisfies both unless it qualifies for each.
func TestStackedQuorumsNeverLoosen(t *testing.T) {
	dba := &Subject{User: "dan", Teams: []string{"dba"}}
	both := &Subject{User: "pat", Teams: []string{"dba", "sre"}}
	e := mustCompile(t, &Set{Resources: testSet().Resources[:1], Teams: []string{"engineering", "sre", "security", "dba"}, Policies: []Policy{
		{Name: "a-dba", Match: Match{Resources: ResourceSelector{Names: []string{"orders"}}, Actions: []string{"ddl"}},
			Effect: "require_approval", Quorum: &QuorumSpec{Approvers: Principals{Teams: []string{"dba"}}}},
		{Name: "b-sre", Match: Match{Resources: ResourceSelector{Names: []string{"orders"}}, Actions: []string{"ddl"}},
			Effect: "require_approval", Quorum: &QuorumSpec{RequiredTeams: []string{"sre"}}},
	}})
	var d Decision
	e.Evaluate(&Request{Subject: alice, Resource: "orders", Action: &Action{Class: ClassDDL, EstimatedRows: -1}}, &d)
	for _, tt := range []struct {
		name      string
		approvers []*Subject
		met       bool
	}{
		{"one SRE", []*Subject{bob}, false},
		{"one DBA", []*Subject{dba}, false},
		{"a DBA and an SRE", []*Subject{dba, bob}, true},
		{"one person in both teams", []*Subject{both}, true},
	} {
		if got := d.Quorum.Progress(alice, tt.approvers).Met(); got != tt.met {
			t.Errorf("%s: met=%v, want %v (%v)", tt.name, got, tt.met, d.Quorum.Progress(alice, tt.approvers).Terms)
		}
	}
	for _, s := range []*Subject{bob, dba, both} {
		if err := d.Quorum.Eligible(alice, s); err != nil {
			t.Errorf("%s may not vote: %v", s.User, err)
		}
	}
	if d.Quorum.Eligible(alice, carol) == nil {
		t.Error("carol qualifies for neither policy but may vote")
	}
}

func TestEligible(t *testing.T) {
	sreOnly := &Quorum{MinApprovals: 1, RequiredTeams: []string{"sre"}, Approvers: Principals{Teams: []string{"sre"}}}
	anyone := &Quorum{MinApprovals: 1, AnyApprover: true}
	selfOK := &Quorum{MinApprovals: 1, AnyApprover: true, RequesterCanApprove: true}
	explicit := &Quorum{MinApprovals: 2, RequiredTeams: []string{"sre"}, Approvers: Principals{Teams: []string{"sre", "security"}}}
	tests := []struct {
		name     string
		q        *Quorum
		approver *Subject
		want     error
	}{
		{"sre approves", sreOnly, bob, nil},
		{"engineer not eligible", sreOnly, dave, ErrNotEligible},
		{"self approval refused", anyone, alice, ErrSelfApproval},
		{"self approval allowed by policy", selfOK, alice, nil},
		{"anyone else", anyone, dave, nil},
		{"explicit approvers", explicit, carol, nil},
		{"explicit approvers exclude", explicit, dave, ErrNotEligible},
		{"nil approver", anyone, nil, ErrNotEligible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.q.Eligible(alice, tt.approver); !errors.Is(err, tt.want) {
				t.Errorf("Eligible = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSchedule(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	at := func(day, hour, minute int) time.Time { return time.Date(2026, 11, day, hour, minute, 0, 0, berlin) } // 2026-11-23 is a Monday
	tests := []struct {
		name string
		s    Schedule
		t    time.Time
		want bool
	}{
		{"business hours in", Schedule{Weekdays: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, at(23, 10, 0), true},
		{"business hours end is exclusive", Schedule{Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, at(23, 17, 0), false},
		{"business hours weekend", Schedule{Weekdays: []string{"monday", "friday"}, Start: "09:00", End: "17:00", Timezone: "Europe/Berlin"}, at(22, 10, 0), false},
		{"overnight evening", Schedule{Start: "18:00", End: "08:00", Timezone: "Europe/Berlin"}, at(23, 22, 30), true},
		{"overnight morning", Schedule{Start: "18:00", End: "08:00", Timezone: "Europe/Berlin"}, at(24, 7, 59), true},
		{"overnight daytime", Schedule{Start: "18:00", End: "08:00", Timezone: "Europe/Berlin"}, at(24, 8, 0), false},
		{"friday night covers saturday morning", Schedule{Weekdays: []string{"fri"}, Start: "18:00", End: "08:00", Timezone: "Europe/Berlin"}, at(28, 3, 0), true},
		{"friday night is not thursday night", Schedule{Weekdays: []string{"fri"}, Start: "18:00", End: "08:00", Timezone: "Europe/Berlin"}, at(27, 3, 0), false},
		{"timezone applies", Schedule{Start: "09:00", End: "17:00", Timezone: "America/New_York"}, at(23, 10, 0), false},
		{"hours only", Schedule{Start: "9", End: "24:00"}, time.Date(2026, 11, 23, 23, 59, 0, 0, time.UTC), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := compileSchedule(&tt.s)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.contains(tt.t); got != tt.want {
				t.Errorf("contains(%v) = %v, want %v", tt.t, got, tt.want)
			}
		})
	}
	for _, bad := range []Schedule{{Start: "25:00", End: "01:00"}, {Start: "9:0", End: "10:00"}, {Weekdays: []string{"funday"}}, {Start: "10:00", End: "10:00"}, {Timezone: "Mars/Olympus"}} {
		if _, err := compileSchedule(&bad); err == nil {
			t.Errorf("compileSchedule(%+v) succeeded, want error", bad)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	base := func(p Policy) *Set { s := testSet(); s.Policies = []Policy{p}; return s }
	tests := []struct {
		name string
		p    Policy
		path string
		msg  string
	}{
		{"missing effect", Policy{Name: "x"}, "effect", "effect is required"},
		{"bad effect", Policy{Name: "x", Effect: "maybe"}, "effect", "unknown effect"},
		{"bad tier", Policy{Name: "x", Effect: "allow", Tier: "extreme"}, "tier", "unknown tier"},
		{"bad class", Policy{Name: "x", Effect: "allow", Match: Match{Actions: []string{"read", "frobnicate"}}}, "match.actions[1]", "unknown action class"},
		{"unknown resource", Policy{Name: "x", Effect: "allow", Match: Match{Resources: ResourceSelector{Names: []string{"nope"}}}}, "match.resources.names[0]", `unknown resource "nope"`},
		{"unknown team", Policy{Name: "x", Effect: "allow", Match: Match{Principals: Principals{Teams: []string{"dba"}}}}, "match.principals.teams[0]", `unknown team "dba"`},
		{"unknown quorum team", Policy{Name: "x", Effect: "require_approval", Quorum: &QuorumSpec{RequiredTeams: []string{"sre", "dba"}}}, "quorum.required_teams[1]", `unknown team "dba"`},
		{"approval without quorum", Policy{Name: "x", Effect: "require_approval"}, "quorum", "needs a quorum"},
		{"quorum on allow", Policy{Name: "x", Effect: "allow", Quorum: &QuorumSpec{}}, "quorum", "only valid"},
		{"bad timeout", Policy{Name: "x", Effect: "require_approval", Quorum: &QuorumSpec{Timeout: "soon"}}, "quorum", "invalid duration"},
		{"cel syntax", Policy{Name: "x", Effect: "deny", When: "action.tables.size( > 1"}, "when", "Syntax error"},
		{"cel unknown field", Policy{Name: "x", Effect: "deny", When: "action.rows > 1"}, "when", "undefined field 'rows'"},
		{"cel type error", Policy{Name: "x", Effect: "deny", When: "action.estimated_rows > 'many'"}, "when", "no matching overload"},
		{"cel not bool", Policy{Name: "x", Effect: "deny", When: "action.estimated_rows"}, "when", "must be a bool"},
		{"bad schedule", Policy{Name: "x", Effect: "deny", Schedule: &Schedule{Timezone: "Nowhere/City"}}, "schedule", "timezone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(base(tt.p))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Compile error = %v, want a *FieldError", err)
			}
			if !strings.Contains(err.Error(), tt.path+": ") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not name %q with %q", err, tt.path, tt.msg)
			}
		})
	}
	s := testSet()
	s.Policies = append(s.Policies, s.Policies[0])
	if _, err := Compile(s); err == nil || !strings.Contains(err.Error(), "duplicate policy name") {
		t.Errorf("duplicate policy: %v", err)
	}
	s = testSet()
	s.Defaults.ProductionEffect = "require_approval"
	if _, err := Compile(s); err == nil || !strings.Contains(err.Error(), "must be allow or deny") {
		t.Errorf("bad default: %v", err)
	}
}

func TestConditionFailsClosed(t *testing.T) {
	s := testSet()
	s.Policies = []Policy{
		{Name: "allow-if", Effect: "allow", When: "action.tables[3] == 'x'"},
		{Name: "deny-if", Effect: "deny", Match: Match{Actions: []string{"write"}}, When: "action.tables[3] == 'x'"},
	}
	e := mustCompile(t, s)
	var d Decision
	e.Evaluate(&Request{Subject: alice, Resource: "staging-db", Action: &Action{Class: ClassRead}}, &d)
	if d.Effect != Allow || !d.Default || d.Err == nil {
		t.Errorf("allow with failing condition: %v default=%v err=%v; want the default and an error", d.Effect, d.Default, d.Err)
	}
	e.Evaluate(&Request{Subject: alice, Resource: "staging-db", Action: &Action{Class: ClassWrite}}, &d)
	if d.Effect != Deny || d.Err == nil || !strings.Contains(d.Reason(), "failed closed") {
		t.Errorf("deny with failing condition: %v (%s)", d.Effect, d.Reason())
	}
}

func TestNeedsEstimate(t *testing.T) {
	e := mustCompile(t, testSet())
	if !e.NeedsEstimate("orders", ClassDelete) || e.NeedsEstimate("orders", ClassWrite) || e.NeedsEstimate("admin-api", ClassDelete) {
		t.Error("NeedsEstimate does not follow the big-deletes policy")
	}
}

func TestSnapshotStable(t *testing.T) {
	a := mustCompile(t, testSet())
	s := testSet()
	slices.Reverse(s.Policies)
	slices.Reverse(s.Resources)
	s.Policies[0].Match.Resources.Names = []string{"orders"}
	b := mustCompile(t, s)
	if a.Snapshot() != b.Snapshot() {
		t.Error("reordering policies changed the snapshot hash")
	}
	s.Policies[0].Quorum.RequiredTeams = []string{"security", "sre"}
	c := mustCompile(t, s)
	if c.Snapshot() == a.Snapshot() {
		t.Error("changing a quorum did not change the snapshot hash")
	}
	s = testSet()
	s.Resources[1].Labels["env"] = "production"
	if mustCompile(t, s).Snapshot() == a.Snapshot() {
		t.Error("relabelling a resource did not change the snapshot hash")
	}
}

func TestAllowPathDoesNotAllocate(t *testing.T) {
	e := mustCompile(t, testSet())
	req := &Request{Subject: alice, Resource: "orders", Action: &Action{Class: ClassRead, Tables: []string{"orders"}}, Time: time.Now()}
	// The regulated-tables condition is evaluated for reads on orders; drop it to measure
	// the plain allow path.
	s := testSet()
	s.Policies = s.Policies[:5]
	e = mustCompile(t, s)
	var d Decision
	e.Evaluate(req, &d)
	if n := testing.AllocsPerRun(100, func() { e.Evaluate(req, &d) }); n != 0 {
		t.Errorf("allow path allocates %v times per evaluation", n)
	}
}

// benchSet builds n policies over 50 resources, about a tenth of them selecting orders.
func benchSet(n int) *Set {
	s := testSet()
	for i := range 50 {
		s.Resources = append(s.Resources, Resource{Name: fmt.Sprintf("db%d", i), Kind: "postgres", Labels: map[string]string{"env": "production", "team": fmt.Sprint(i % 5)}})
	}
	s.Policies = []Policy{{Name: "prod-read", Match: Match{Resources: ResourceSelector{Labels: map[string]string{"env": "production"}}, Actions: []string{"read"}}, Effect: "allow"}}
	for i := 1; len(s.Policies) < n; i++ {
		p := Policy{Name: fmt.Sprintf("p%d", i), Effect: "deny", Match: Match{Actions: []string{"write"}, Resources: ResourceSelector{Names: []string{fmt.Sprintf("db%d", i%50)}}}}
		switch i % 10 {
		case 0:
			p.Match.Resources.Names = []string{"orders"}
			p.Match.Actions = []string{"read"}
			p.Match.Principals.Teams = []string{"sre"}
		case 1:
			p.Match.Resources.Names = []string{"orders"}
			p.Match.Actions = []string{"read"}
			p.Schedule = &Schedule{Start: "01:00", End: "02:00"}
		}
		s.Policies = append(s.Policies, p)
	}
	return s
}

func BenchmarkEvaluateAllow(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			e := mustCompile(b, benchSet(n))
			req := &Request{Subject: alice, Resource: "orders", Action: &Action{Class: ClassRead, Tables: []string{"orders"}}, Time: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
			var d Decision
			b.ReportAllocs()
			for b.Loop() {
				e.Evaluate(req, &d)
			}
			if d.Effect != Allow {
				b.Fatalf("decision %v", d.String())
			}
		})
	}
}

func BenchmarkEvaluateCondition(b *testing.B) {
	e := mustCompile(b, testSet())
	req := &Request{Subject: alice, Resource: "orders", Action: &Action{Class: ClassDelete, EstimatedRows: 5000}, Time: time.Now()}
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(req, &d)
	}
}

func TestQuorumJSONRoundTrip(t *testing.T) {
	q := &Quorum{MinApprovals: 2, MinDistinctTeams: 2, RequiredTeams: []string{"dba"}, Approvers: Principals{Teams: []string{"dba", "sre"}}, RequireReason: true, Timeout: 90 * time.Minute}
	b, err := json.Marshal(q)
	if err != nil || !strings.Contains(string(b), `"timeout":"1h30m"`) {
		t.Fatalf("%s %v", b, err)
	}
	var back Quorum
	if err := json.Unmarshal(b, &back); err != nil || back.Timeout != q.Timeout || back.MinApprovals != 2 || !slices.Equal(back.Approvers.Teams, q.Approvers.Teams) || !back.RequireReason {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

func TestPrincipalsNamesVersusMatches(t *testing.T) {
	var none Principals
	if !none.Matches(alice) || none.Names(alice) {
		t.Error("an empty Principals must select everyone but name nobody")
	}
	sec := Principals{Teams: []string{"security"}}
	if !sec.Names(carol) || sec.Names(alice) {
		t.Error("Names does not follow the listed teams")
	}
}
