"""Finding the data: a failed download says why in one line, then the bundled sample is used."""


def test_a_failed_download_says_why_in_one_line(tmp_path, monkeypatch):
    from torchport.datasets.fetch import locate
    monkeypatch.delenv("TORCHPORT_OFFLINE", raising=False)
    monkeypatch.setenv("TORCHPORT_DATA", str(tmp_path))
    lines = []

    def download(root):
        raise OSError("[Errno -3] Temporary failure in name resolution\nmore")

    got = locate("MNIST", None, lambda d: False, download, sample="SAMPLE", how_to_get="pass --data-dir",
                 log=lambda msg, file=None: lines.append(msg))
    assert got == "SAMPLE"
    assert lines[0] == "MNIST download failed (OSError: [Errno -3] Temporary failure in name resolution)"
    assert "bundled" in lines[1] and len(lines) == 2
