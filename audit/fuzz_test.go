package audit

import "testing"

// FuzzDecodeLine checks that no line makes the decoder panic, and that the event of a line
// it accepts carries a hash and can be written again.
func FuzzDecodeLine(f *testing.F) {
	ev := &Event{Seq: 1, Type: "pg.statement", Actor: "alice", PrevHash: GenesisHash}
	line, _ := ev.encode(nil)
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
		if _, err := ev.encode(nil); err != nil {
			t.Fatal(err)
		}
	})
}
