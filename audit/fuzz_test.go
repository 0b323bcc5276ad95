package audit

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeLine checks that no line makes the decoder panic, and that the event of a line
// it accepts carries a hash and can be written again.
func FuzzDecodeLine(f *testing.F) {
	ev := &Event{Seq: 1, Type: "pg.statement", Actor: "alice", PrevHash: GenesisHash}
	line, _ := ev.encode(nil, nil, false)
	f.Add(string(line[:len(line)-1]))
	f.Add(`{"seq":1,"hash":"00"}`)
	f.Fuzz(func(t *testing.T, s string) {
		ev, err := decodeLine([]byte(s))
		if err != nil {
			return
		}
		if len(ev.Hash) != 64 {
			t.Fatalf("accepted line has hash %q", ev.Hash)
		}
		if _, err := ev.encode(nil, nil, false); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzEncode checks that the hand-written encoder gives the bytes encoding/json gives, for
// any strings in any field (statements and paths come from clients).
func FuzzEncode(f *testing.F) {
	f.Add("SELECT '<a>' & \"b\"\n", "alice\u2028", "k\x01")
	f.Add("\xff\xfe ok", "", "détail")
	f.Fuzz(func(t *testing.T, action, actor, key string) {
		e := &Event{Seq: 3, ID: "ev_1", Type: TypePGStatement, Actor: actor, Action: action, Rules: []string{action, actor},
			Details: map[string]any{key: action, "n": 7, "list": []string{key}}, PrevHash: GenesisHash,
			Attrs: []Attr{String("attr_"+key, actor), Int("m", int64(len(action)))}}
		if key == "m" {
			e.Attrs = e.Attrs[:1] // a key must not be in both
		}
		want, err := json.Marshal(e.withAttrsInDetails())
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendEvent(nil, e, nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("encoder differs from encoding/json:\n got %s\nwant %s", got, want)
		}
	})
}
