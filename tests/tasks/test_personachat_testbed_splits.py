"""Persona-Chat's testbed splits: the validation dialogues cut 90/10, whole dialogues on each side."""

from quantgpt.tasks.personachat import load_personachat


def test_testbed_splits_cut_the_validation_dialogues(shared_data):
    valid = load_personachat("valid", shared_data)
    train = load_personachat("testbed-train", shared_data)
    select = load_personachat("testbed-select", shared_data)
    assert train + select == valid  # same examples, same candidates, in order
    train_dialogues = {e.dialogue_id for e in train}
    select_dialogues = {e.dialogue_id for e in select}
    assert not train_dialogues & select_dialogues
    assert len(select_dialogues) == len(train_dialogues | select_dialogues) // 10  # 100 of the 1,000 dialogues
