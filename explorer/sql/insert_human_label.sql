insert into human_labels (checkpoint_id, prompt_id, label, reviewer, note)
values ($checkpoint_id, $prompt_id, $label, $reviewer, $note)
