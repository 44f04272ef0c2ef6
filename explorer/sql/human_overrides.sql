-- The human label that overrides the judges on each relabelled response: the newest (views.sql,
-- human_override), with who gave it and when.
select checkpoint_id, prompt_id, label, reviewer, created_at from human_override order by checkpoint_id, prompt_id
