package elevation

import (
	"context"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/devserver"
	"github.com/portcullis/portcullis/internal/testenv"
)

// TestVaultTokenIsRenewed: a broker holding a 3-second token keeps working past it.
func TestVaultTokenIsRenewed(t *testing.T) {
	v := testenv.Vault(t)
	vc, _ := vault.NewClient(&vault.Config{Address: v.Address()})
	vc.SetToken(devserver.VaultRootToken)
	ctx := context.Background()
	tok, err := vc.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{TTL: "3s", ExplicitMaxTTL: "1m", Policies: []string{"root"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vc.KVv2("secret").Put(ctx, "orders", map[string]any{"username": "u", "password": "p"}); err != nil {
		t.Fatal(err)
	}
	cfg := &configs.Config{Vault: configs.Vault{Address: v.Address(), Token: tok.Auth.ClientToken, Timeout: configs.Duration(5 * time.Second)},
		Resources: []configs.Resource{{Name: "orders", Kind: "postgres", Credentials: configs.Credentials{Vault: &configs.VaultCredentials{Path: "secret/data/orders"}}}}}
	b, err := NewVaultBroker(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	time.Sleep(5 * time.Second) // past the token's first TTL
	s, err := b.client.Logical().ReadWithContext(ctx, "secret/data/orders")
	if err != nil || s == nil {
		t.Fatalf("the broker's token lapsed: %v", err)
	}
}
