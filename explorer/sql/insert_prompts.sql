-- New prompts only: a stored prompt is never rewritten (prompt_conflicts.sql refuses changed ones first).
insert or ignore into prompts (id, suite, source, category, kind, expected, split, text, grp)
select id, suite, source, category, kind, expected, split, text, grp from incoming_prompts
