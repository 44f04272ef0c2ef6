insert or replace into judgments (checkpoint_fp, prompt_id, gen_key, judge, judge_version, label, explanation)
select checkpoint_fp, prompt_id, gen_key, judge, judge_version, label, explanation from new_judgments
