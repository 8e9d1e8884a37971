package config

import (
	"fmt"
	"strings"

	"github.com/mediflow/mediflow/internal/dataclass"
)

// validateSync fills the defaults of one sync entry (mode, interval, slo)
// and applies the policy rules of pitfall 3: operational data is not batched
// hourly or nightly, and no class is refreshed less often than its maximum
// interval, unless a waiver says why (then lint warns with the reason).
func (p *parser) validateSync(s *SyncPolicy, sp string) {
	cl, ok := dataclass.Lookup(s.Class)
	if !ok || p.bad[sp+".mode"] || p.bad[sp+".interval"] {
		return
	}
	intervalGiven := s.Interval != 0
	if s.Mode == "" {
		s.Mode = cl.DefaultMode
		if intervalGiven {
			s.Mode = dataclass.ModePoll
		}
	}
	switch {
	case s.Mode.Batch():
		if intervalGiven {
			p.warnf(p.at(sp+".interval"), fmt.Sprintf("remove `interval`, or set `mode: poll` to poll every %s", fmtDuration(s.Interval)),
				"`interval` is ignored when `mode` is `%s`", s.Mode)
		}
		s.Interval = s.Mode.Period(0)
	case !intervalGiven:
		s.Interval = cl.DefaultInterval
	}
	period := s.Period()

	if p.bad[sp+".waiver"] || p.bad[sp+".waiver.reason"] {
		return // the waiver is already reported; judging the policy without it would report it twice
	}
	if s.Waived() && strings.TrimSpace(s.Waiver.Reason) == "" {
		p.rejectf(sp+".waiver.reason", p.at(sp+".waiver.reason"), "write why stale data is acceptable for this practice and class",
			"the waiver's `reason` is blank")
		return
	}
	waived := s.Waived()
	need := cl.Check(s.Mode, s.Interval)
	switch {
	case need != dataclass.NoWaiver && waived:
		p.warnf(p.at(sp+".waiver.reason"), fmt.Sprintf("remove the waiver and use %s once the reason no longer holds", freshPolicy(cl)),
			"class `%s` is synced %s under a waiver (data up to %s old is accepted): %q", s.Class, describe(s), fmtDuration(period), s.Waiver.Reason)
	case need == dataclass.WaiverForBatch:
		at := p.at(sp + ".mode")
		p.errorf(at, fmt.Sprintf("use %s; or, if stale %s data is really acceptable here, add `waiver: {reason: \"...\"}` saying why", freshPolicy(cl), s.Class),
			"class `%s` may not sync %s without a waiver: it is operational data, and %s", s.Class, s.Mode, dataclass.StaleReason)
	case need == dataclass.WaiverForPeriod && s.Mode.Batch():
		p.errorf(p.at(sp+".mode"), fmt.Sprintf("use %s; or add `waiver: {reason: \"...\"}` saying why older %s data is acceptable", freshPolicy(cl), s.Class),
			"`mode: %s` refreshes class `%s` every %s, longer than its maximum %s: %s", s.Mode, s.Class, fmtDuration(period), fmtDuration(cl.MaxInterval), cl.Risk)
	case need == dataclass.WaiverForPeriod:
		p.errorf(p.at(sp+".interval"), fmt.Sprintf("set `interval: %s` or less, as %s data must stay fresh; or add `waiver: {reason: \"...\"}` saying why it need not", fmtDuration(cl.MaxInterval), s.Class),
			"interval %s for class `%s` is longer than its maximum %s", fmtDuration(s.Interval), s.Class, fmtDuration(cl.MaxInterval))
	case waived:
		p.warnf(p.at(sp+".waiver"), "remove `waiver:`; keep waivers for policies that need one, so each one stands out",
			"the waiver of class `%s` is not needed: syncing %s keeps it within its maximum %s", s.Class, describe(s), fmtDuration(cl.MaxInterval))
	}

	switch {
	case p.bad[sp+".slo"]:
	case s.SLO == 0:
		s.SLO = cl.DefaultSLO
		if s.Mode != dataclass.ModeRealtime && 2*period > s.SLO {
			s.SLO = 2 * period
		}
	case s.Mode != dataclass.ModeRealtime && s.SLO < period:
		p.errorf(p.at(sp+".slo"), fmt.Sprintf("set `slo: %s` or more, or refresh more often", fmtDuration(period)),
			"`slo` %s for class `%s` is shorter than its refresh period %s: it can never be met", fmtDuration(s.SLO), s.Class, fmtDuration(period))
	}
}

// describe says how a policy syncs, for messages: "nightly", "hourly",
// "by polling every 2h", "in real time with a safety poll every 2h".
func describe(s *SyncPolicy) string {
	switch s.Mode {
	case dataclass.ModePoll:
		return "by polling every " + fmtDuration(s.Interval)
	case dataclass.ModeRealtime:
		return "in real time with a safety poll every " + fmtDuration(s.Interval)
	}
	return string(s.Mode)
}

// freshPolicy names the policies a class may use without a waiver, for hints.
func freshPolicy(cl dataclass.Class) string {
	mark := func(m dataclass.Mode) string {
		if cl.DefaultMode == m {
			return " (the class default)"
		}
		return ""
	}
	opts := []string{
		"`mode: realtime`" + mark(dataclass.ModeRealtime),
		fmt.Sprintf("`mode: poll` with an interval of %s or less", fmtDuration(cl.MaxInterval)),
	}
	if cl.DefaultMode == dataclass.ModePoll {
		opts[1] = fmt.Sprintf("`mode: poll` with `interval: %s` (the class default; at most %s)", fmtDuration(cl.DefaultInterval), fmtDuration(cl.MaxInterval))
	}
	for _, m := range []dataclass.Mode{dataclass.ModeHourly, dataclass.ModeNightly} {
		if cl.Check(m, 0) == dataclass.NoWaiver {
			opts = append(opts, "`mode: "+string(m)+"`"+mark(m))
		}
	}
	return joinOr(opts)
}

// joinOr joins phrases as "a, b or c".
func joinOr(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
