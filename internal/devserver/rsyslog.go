package devserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Rsyslog is a running rsyslogd collecting syslog over TCP (octet-counted or
// newline-framed) and UDP on loopback, writing every message it gets to File, one line
// each: PRI|APP-NAME|MSGID|HOSTNAME|MSG.
type Rsyslog struct {
	TCPPort, UDPPort int
	File             string
	proc             *process
}

// StartRsyslog starts Debian's rsyslogd in the foreground with its files in dir.
func StartRsyslog(dir string) (*Rsyslog, error) {
	bin, err := lookBin("rsyslogd", "/usr/sbin/rsyslogd")
	if err != nil {
		return nil, err
	}
	tcp, err := FreePort()
	if err != nil {
		return nil, err
	}
	udp, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Rsyslog{TCPPort: tcp, UDPPort: udp, File: filepath.Join(dir, "messages")}
	conf := filepath.Join(dir, "rsyslog.conf")
	body := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="256k")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="%d")
input(type="imudp" address="127.0.0.1" port="%d")
template(name="line" type="string" string="%%pri%%|%%app-name%%|%%msgid%%|%%hostname%%|%%msg%%\n")
action(type="omfile" file=%q template="line")
`, dir, tcp, udp, r.File)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	if r.proc, err = start("rsyslogd", cmd, filepath.Join(dir, "rsyslogd.log")); err != nil {
		return nil, err
	}
	if err := r.proc.waitReady(15*time.Second, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", r.TCPAddr())
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// TCPAddr and UDPAddr return host:port.
func (r *Rsyslog) TCPAddr() string { return addr(r.TCPPort) }
func (r *Rsyslog) UDPAddr() string { return addr(r.UDPPort) }

// Stop shuts rsyslogd down; it writes what it has first.
func (r *Rsyslog) Stop() error { return r.proc.stop(syscall.SIGTERM, 5*time.Second) }
