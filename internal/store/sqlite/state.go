package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/mediflow/mediflow/internal/store"
)

// GetState returns the state document under key, or store.ErrNotFound.
func (s *Store) GetState(ctx context.Context, practice, key string) ([]byte, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT value FROM engine_state WHERE practice = ? AND key = ?`, practice, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: state %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get state %q: %w", key, err)
	}
	return v, nil
}

// PutState creates or replaces the state document under key.
func (s *Store) PutState(ctx context.Context, practice, key string, value []byte) error {
	if err := checkPractice(practice); err != nil {
		return err
	}
	if key == "" {
		return errors.New("sqlite: put state: empty key")
	}
	if value == nil {
		value = []byte{}
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO engine_state (practice, key, value, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (practice, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		practice, key, value, nanos(s.now())); err != nil {
		return fmt.Errorf("sqlite: put state %q: %w", key, err)
	}
	s.kickCheckpoint()
	return nil
}

// DeleteState removes the state document under key, if any.
func (s *Store) DeleteState(ctx context.Context, practice, key string) error {
	if err := checkPractice(practice); err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM engine_state WHERE practice = ? AND key = ?`, practice, key); err != nil {
		return fmt.Errorf("sqlite: delete state %q: %w", key, err)
	}
	return nil
}

// ListState lists the practice's state keys starting with prefix, sorted.
func (s *Store) ListState(ctx context.Context, practice, prefix string) ([]string, error) {
	if err := checkPractice(practice); err != nil {
		return nil, err
	}
	// A range on the primary key, not LIKE: prefixes may hold % or _.
	rows, err := s.r.QueryContext(ctx, `SELECT key FROM engine_state WHERE practice = ? AND key >= ? ORDER BY key`, practice, prefix)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list state: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("sqlite: list state: %w", err)
		}
		if !strings.HasPrefix(k, prefix) {
			break
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list state: %w", err)
	}
	return out, nil
}
