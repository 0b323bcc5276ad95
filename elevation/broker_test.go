package elevation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/configs"
)

func TestStaticBroker(t *testing.T) {
	t.Setenv("DEMO_PG_PASSWORD", "s3cret-upstream")
	cfg, err := configs.Load("../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := NewStaticBroker(cfg)
	c, err := b.Credentials(context.Background(), "orders", "")
	if err != nil || c.Username != "portcullis" || c.Password != "s3cret-upstream" {
		t.Fatalf("orders credentials: %v %v", c.Username, err)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("formatting credentials shows the password: %s", s)
		}
	}
	if _, err := b.Credentials(context.Background(), "payments", ""); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("unknown resource: %v", err)
	}
}
