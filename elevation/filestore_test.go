package elevation_test

import (
	"testing"

	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/elevation/storetest"
)

func TestFileStore(t *testing.T) {
	dir := ""
	storetest.Run(t, func(t *testing.T) elevation.Store {
		if dir == "" || t.Name() != lastName {
			dir, lastName = t.TempDir(), t.Name()
		}
		s, err := elevation.OpenFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

var lastName string
