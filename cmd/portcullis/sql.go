package main

import (
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

func classifySQL(sql string) (*policy.Action, error) { return pgsql.Classify(sql), nil }
