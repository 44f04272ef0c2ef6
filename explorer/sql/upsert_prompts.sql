insert or replace into prompts (id, suite, source, category, kind, expected, split, text, grp)
select id, suite, source, category, kind, expected, split, text, grp from incoming_prompts
